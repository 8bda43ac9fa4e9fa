"""eval.tune: settings measured on several sets at once."""
from __future__ import annotations

import json

from eval.questions import load_questions
from eval.tune import measure


def test_measure_scores_each_set_and_their_average(tmp_path, fake_sample_engine):
    qs = tmp_path / "q.jsonl"
    qs.write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in [
        {"id": "a", "question": "莱芜区如何整改砂石问题", "answerable": True, "type": "how",
         "evidence": ["砂石资源整治工作专班"]},
        {"id": "b", "question": "钢城区有多少个专班？", "answerable": False, "type": "unanswerable",
         "evidence": []},
    ]), encoding="utf-8")
    items = load_questions(qs)
    sets = {"one": (fake_sample_engine, items), "two": (fake_sample_engine, items)}
    keyword = measure(sets, dense_weight=0.0)
    assert keyword["one"] == keyword["two"] == keyword["average"]
    assert keyword["one"]["hit@1"] == 1.0  # only the answerable question counts
    nothing = measure(sets, dense_weight=0.0, bm25_weight=0.0)  # no ranking at all: no hit
    assert nothing["average"]["mrr"] == 0.0
