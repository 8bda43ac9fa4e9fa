"""The evaluation harness: question-set reader, resumable runs, outputs, the CLI.

Runs use a real index of one sample document (the Jinan file, ~16 K characters) with the
real embedding model, built once per session and shared by every test through the
index cache folder. Its chunks are larger than the default ones: fewer to embed, and the
harness does not depend on the chunking.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from eval.cli import add_parser, run
from eval.harness import EvalError, rule_rewrite, run_config
from eval.pipelines import open_engine
from eval.questions import QuestionSetError, load_questions
from rag import Config, Engine
from rag.answer import Answerer
from rag.generators import ExtractiveGenerator

ROOT = Path(__file__).resolve().parents[1]
JINAN = ROOT / "data" / "corpus" / "jinan-city-2023-04-25.txt"
CHUNKING = {"chunk_size": 400, "chunk_overlap": 60}

QUESTIONS = [
    {"id": "j1", "question": "2022年济南市地区生产总值是多少？", "answerable": True,
     "evidence": ["2022年全市实现地区生产总值12027.5亿元"], "doc": JINAN.name,
     "answer_points": ["12027.5亿元"], "type": "fact", "note": "unknown fields are ignored"},
    {"id": "j2", "question": "这个项目总投资是多少？", "answerable": True,
     "evidence": ["加快实施总投资273亿元的中心城区雨污合流管网改造"], "doc": JINAN.name,
     "answer_points": ["273亿元"], "type": "followup",
     "history": [["济南市怎么治理城市内涝？", "实施中心城区雨污合流管网改造和城市内涝治理PPP项目。"]]},
    {"id": "j3", "question": "城子崖遗址博物馆每年接待多少游客？", "answerable": False,
     "evidence": [], "doc": "none", "answer_points": [], "type": "unanswerable"},
]


def write_questions(path: Path, questions=QUESTIONS) -> Path:
    path.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in questions), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Path:
    """A folder holding ``corpus/`` (the Jinan file) and its indexed ``.rag/eval-indexes``,
    the index cache the CLI uses when run from this folder."""
    root = tmp_path_factory.mktemp("eval")
    (root / "corpus").mkdir()
    shutil.copy(JINAN, root / "corpus")
    config = Config(corpus=str(root / "corpus"), **CHUNKING)
    open_engine(config, root / ".rag" / "eval-indexes", progress=False)
    return root


@pytest.fixture
def base(workspace) -> Config:
    return Config(corpus=str(workspace / "corpus"), k=10, **CHUNKING)


@pytest.fixture
def search_calls(monkeypatch) -> list[str]:
    """Queries sent to Engine.search (the call still goes through)."""
    calls: list[str] = []
    original = Engine.search

    def counting(self, query, *args, **kwargs):
        calls.append(query)
        return original(self, query, *args, **kwargs)
    monkeypatch.setattr(Engine, "search", counting)
    return calls


# -- question set ------------------------------------------------------------------------

def test_reader_reads_the_format_and_ignores_unknown_fields(tmp_path):
    items = load_questions(write_questions(tmp_path / "q.jsonl"))
    assert [i.id for i in items] == ["j1", "j2", "j3"]
    assert items[1].history == (("济南市怎么治理城市内涝？", "实施中心城区雨污合流管网改造和城市内涝治理PPP项目。"),)
    assert items[2].answerable is False and items[2].evidence == ()


@pytest.mark.parametrize("bad, message", [
    ('{"id": "x", "question": "问题"', "line 2: Expecting"),
    ('{"id": "x", "question": "问题", "answerable": true, "type": "fact"}', "line 2: missing field(s): evidence"),
    ('{"id": "x", "question": "问题", "answerable": "yes", "evidence": [], "type": "fact"}',
     "line 2: 'answerable' must be true or false"),
    ('{"id": "x", "question": "问题", "answerable": true, "evidence": "段落", "type": "fact"}',
     "line 2: 'evidence' must be a list of strings"),
    ('{"id": "x", "question": "问", "answerable": true, "evidence": [], "type": "followup", "history": ["a"]}',
     "line 2: 'history' must be a list of [question, answer] pairs"),
    ('["not", "an", "object"]', "line 2: expected a JSON object"),
    ('{"id": "j1", "question": "问题", "answerable": true, "evidence": [], "type": "fact"}',
     "line 2: duplicate id 'j1'"),
])
def test_reader_rejects_a_malformed_line_naming_it(tmp_path, bad, message):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps(QUESTIONS[0], ensure_ascii=False) + "\n" + bad + "\n", encoding="utf-8")
    with pytest.raises(QuestionSetError) as exc:
        load_questions(path)
    assert f"{path}, {message}" in str(exc.value)


def test_cli_exits_2_on_a_malformed_question_file(tmp_path, capsys):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps(QUESTIONS[0], ensure_ascii=False) + "\n\n{oops\n", encoding="utf-8")
    assert run(parse(str(path), "--retrieval-only", "--out", str(tmp_path / "out"))) == 2
    assert f"{path}, line 3:" in capsys.readouterr().err


# -- runs --------------------------------------------------------------------------------

def test_rerun_skips_cached_questions_and_a_changed_config_recomputes(tmp_path, workspace, base, search_calls):
    items = load_questions(write_questions(tmp_path / "q.jsonl"))
    out, cache = tmp_path / "out", workspace / ".rag" / "eval-indexes"

    first = run_config("hybrid", items, base, out, index_cache=cache, progress=False)
    assert len(search_calls) == 3
    cached = sorted((out / "cache").iterdir())
    mtimes = [p.stat().st_mtime_ns for p in cached]
    results = (out / "hybrid" / "results.jsonl").read_text(encoding="utf-8")

    again = run_config("hybrid", items, base, out, index_cache=cache, progress=False)
    assert len(search_calls) == 3  # nothing recomputed
    assert [p.stat().st_mtime_ns for p in sorted((out / "cache").iterdir())] == mtimes
    assert (out / "hybrid" / "results.jsonl").read_text(encoding="utf-8") == results
    assert again.metrics == first.metrics

    run_config("hybrid", items, base.replace(rrf_k=base.rrf_k + 1), out, index_cache=cache, progress=False)
    assert len(search_calls) == 6  # a changed configuration is recomputed
    run_config("bm25", items, base, out, index_cache=cache, progress=False)
    assert len(search_calls) == 9  # and so is another named configuration


def test_retrieval_only_results_and_metrics(tmp_path, base, workspace):
    items = load_questions(write_questions(tmp_path / "q.jsonl"))
    result = run_config("hybrid", items, base, tmp_path / "out", index_cache=workspace / ".rag" / "eval-indexes",
                        progress=False)
    lines = [json.loads(line) for line in (tmp_path / "out" / "hybrid" / "results.jsonl").open(encoding="utf-8")]
    assert [r["id"] for r in lines] == ["j1", "j2", "j3"]
    assert set(lines[0]) == {"id", "standalone_question", "retrieved"}
    assert len(lines[0]["retrieved"]) == 10 and {"rank", "score", "doc_id", "section", "paragraph", "text"} <= set(
        lines[0]["retrieved"][0])
    # The follow-up is searched as rag ask would without an LLM.
    assert lines[1]["standalone_question"] == rule_rewrite(QUESTIONS[1]["question"], QUESTIONS[1]["history"])
    assert "城市内涝" in lines[1]["standalone_question"]
    assert result.metrics["overall"]["questions"] == 3
    assert result.metrics["overall"]["hit@10"] == 1.0  # both answerable questions are easy
    assert "mrr" not in result.metrics["by_type"]["unanswerable"]


def test_a_given_rewriter_decides_what_a_follow_up_searches(tmp_path, base, workspace, search_calls):
    items = load_questions(write_questions(tmp_path / "q.jsonl"))

    def rewrite(question, history):
        return "济南市中心城区雨污合流管网改造项目总投资是多少？"
    result = run_config("bm25", items, base, tmp_path / "out", rewrite=rewrite,
                        index_cache=workspace / ".rag" / "eval-indexes", progress=False)
    assert result.records[1]["standalone_question"] == rewrite("", [])
    assert search_calls[1] == rewrite("", [])


@pytest.mark.parametrize("question, history", [
    ("那济南市呢？", [["莱芜区的巡视整改落实工作领导小组由谁任组长？", "由区委主要负责人任组长。"]]),
    ("这个项目总投资是多少？", [["济南市怎么治理城市内涝？", "实施雨污合流管网改造。"]]),
    ("小三线纪念馆接待了多少游客？", [["莱芜区怎么推进文化振兴？", "打造山东小三线纪念馆。"]]),
    ("莱芜区如何整改砂石问题？", []),
])
def test_the_default_rewrite_is_what_rag_ask_searches_without_an_llm(question, history):
    answerer = Answerer(Engine(Config()), ExtractiveGenerator())
    assert rule_rewrite(question, history) == answerer.standalone(question, [tuple(t) for t in history])


def test_answer_mode_keeps_the_whole_ask_object_and_scores_it(tmp_path, base, workspace):
    items = load_questions(write_questions(tmp_path / "q.jsonl"))

    def make_ask(engine):
        assert isinstance(engine, Engine)

        def ask(question, history):  # a hand-made `rag ask --json` object, not an LLM
            retrieved = [h.to_dict() for h in engine.search(question, 5, progress=False)]
            return {"question": question, "standalone_question": question, "answer": "增长3.1%[1]。",
                    "refused": False, "generator": "hand-made",
                    "citations": [{"n": 1, **{k: retrieved[0][k] for k in
                                              ("doc_id", "doc_title", "section", "paragraph", "text")}}],
                    "retrieved": retrieved,
                    "timings": {"rewrite_s": 0.0, "retrieve_s": 0.1, "first_token_s": 0.5, "total_s": 1.0}}
        return ask

    result = run_config("hybrid", items, base, tmp_path / "out", retrieval_only=False, make_ask=make_ask,
                        index_cache=workspace / ".rag" / "eval-indexes", progress=False)
    first = json.loads((tmp_path / "out" / "hybrid" / "results.jsonl").open(encoding="utf-8").readline())
    assert first["id"] == "j1" and first["generator"] == "hand-made" and first["timings"]["total_s"] == 1.0
    overall = result.metrics["overall"]
    assert overall["key_fact_coverage"] == 0.0  # "12027.5亿元" is missing from the answer
    assert overall["refusal_accuracy"] == 0.0 and overall["false_refusals"] == 0.0
    assert overall["total_s_p50"] == 1.0


def test_answer_mode_runs_rag_ask_by_default(tmp_path, base, workspace):
    items = load_questions(write_questions(tmp_path / "q.jsonl"))
    result = run_config("hybrid", items, base.replace(llm="extractive"), tmp_path / "out", retrieval_only=False,
                        index_cache=workspace / ".rag" / "eval-indexes", progress=False)
    assert [r["generator"] for r in result.records] == ["extractive"] * 3
    assert {"answer", "refused", "citations", "retrieved", "timings"} <= set(result.records[0])
    overall = result.metrics["overall"]
    assert {"key_fact_coverage", "citation_recall", "refusal_accuracy", "total_s_p95"} <= set(overall)


def test_naive_only_retrieves_and_configurations_must_be_known(tmp_path, base):
    items = load_questions(write_questions(tmp_path / "q.jsonl"))
    with pytest.raises(EvalError, match="only retrieves"):
        run_config("naive", items, base, tmp_path / "out", retrieval_only=False)
    with pytest.raises(EvalError, match="unknown configuration 'bogus'; known: bm25, dense"):
        run_config("bogus", items, base, tmp_path / "out")


# -- CLI ---------------------------------------------------------------------------------

def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rag")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["eval", *argv])


def test_cli_compares_configurations_and_writes_every_output(tmp_path, workspace, monkeypatch, capsys):
    monkeypatch.chdir(workspace)  # the shared index cache is .rag/eval-indexes here
    for name, value in CHUNKING.items():
        monkeypatch.setenv(f"RAG_{name.upper()}", str(value))
    questions = write_questions(tmp_path / "q.jsonl")
    out = tmp_path / "out"
    code = run(parse(str(questions), "--retrieval-only", "--corpus", "corpus", "--out", str(out),
                     "--compare", "bm25,naive", "--k", "5"))
    assert code == 0
    printed = capsys.readouterr().out
    assert "| config | questions | hit@1 | hit@3 | hit@5 | mrr |" in printed

    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert list(metrics["configs"]) == ["bm25", "naive"]
    assert metrics["meta"]["k"] == 5 and "hit@10" not in metrics["configs"]["bm25"]["overall"]
    naive = [json.loads(line) for line in (out / "naive" / "results.jsonl").open(encoding="utf-8")]
    assert all(h["section"] == "" and h["paragraph"] == 0 and len(h["text"]) <= 500
               for r in naive for h in r["retrieved"])
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Overall" in report and "### followup (n=1)" in report and "## Worst retrieval misses" in report
    for chart in ("retrieval.png", "retrieval_by_type.png"):
        assert (out / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_rejects_an_unknown_configuration(tmp_path, capsys):
    questions = write_questions(tmp_path / "q.jsonl")
    assert run(parse(str(questions), "--retrieval-only", "--compare", "hybrid,bogus",
                     "--out", str(tmp_path / "out"))) == 2
    assert "unknown configuration 'bogus'" in capsys.readouterr().err
