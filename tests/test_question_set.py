"""Sanity checks for the evaluation question set ``eval/questions.jsonl``.

The question set is hand-written from the sample documents in ``data/corpus``.
These tests only use the standard library and pytest; they do not import the
project code, so they keep working while the RAG pipeline changes.
"""

import json
import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "eval" / "questions.jsonl"
CORPUS_DIR = ROOT / "data" / "corpus"

TYPES = {"how", "fact", "paraphrase", "cross", "followup", "unanswerable"}
REQUIRED = {
    "id": str,
    "question": str,
    "answerable": bool,
    "evidence": list,
    "doc": str,
    "answer_points": list,
    "type": str,
}
OPTIONAL = {"history": list}
EVIDENCE_MIN, EVIDENCE_MAX = 10, 40
MIN_ITEMS = 100

# Lines that are headings only: "一、...", "(一)关于...方面问题" (no full stop),
# "1.关于“...”的问题" (no full stop) and "(18)短标题。" (exactly one full stop, at the end).
_SECTION_RE = re.compile(r"^[一二三四五六七八九十]+、")
_PAREN_CN_RE = re.compile(r"^\([一二三四五六七八九十]+\)")
_NUM_DOT_RE = re.compile(r"^\d+\.")
_PAREN_NUM_ONLY_RE = re.compile(r"^\(\d+\)[^。]*。$")
# An inline heading at the start of a body line ("(一)标题。正文..." or "1.针对“...”的问题:正文...").
_INLINE_HEADING_RE = re.compile(r"^\s*(?:\([一二三四五六七八九十]+\)|\d+\.)[^。:]*[。:]")


def _squash(text):
    return "".join(text.split())


def is_body_line(line):
    """True for a body paragraph; False for header, heading-only and signature lines.

    Body paragraphs are indented and contain a full stop.  Header lines (breadcrumb,
    title, source/date, ``编辑:``) are not indented; signature lines and section
    headings carry no full stop.
    """
    if not line[:1].isspace():
        return False
    s = line.strip()
    if "。" not in s:
        return False
    if _SECTION_RE.match(s):
        return False
    if (_PAREN_CN_RE.match(s) or _NUM_DOT_RE.match(s)) and "。" not in s:
        return False
    if _PAREN_NUM_ONLY_RE.match(s):
        return False
    return True


@pytest.fixture(scope="module")
def corpus():
    files = sorted(CORPUS_DIR.glob("*.txt"))
    assert files, f"no corpus files in {CORPUS_DIR}"
    return {p.name: p.read_text(encoding="utf-8").splitlines() for p in files}


@pytest.fixture(scope="module")
def items():
    assert QUESTIONS.is_file(), f"missing {QUESTIONS}"
    raw = QUESTIONS.read_bytes()
    text = raw.decode("utf-8")  # must be valid UTF-8
    assert "\\u" not in text, "write Chinese characters directly (ensure_ascii=False)"
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        assert line.strip(), f"line {n}: blank line"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:  # pragma: no cover - reported by assert
            pytest.fail(f"line {n}: invalid JSON: {e}")
        assert isinstance(obj, dict), f"line {n}: not a JSON object"
        out.append(obj)
    return out


def occurrences(corpus, needle):
    """List of (file name, line index) for every occurrence of needle (per line)."""
    hits = []
    for name, lines in corpus.items():
        for i, line in enumerate(lines):
            hits.extend([(name, i)] * line.count(needle))
    return hits


def test_fields_and_types(items):
    for it in items:
        qid = it.get("id", "?")
        for key, typ in REQUIRED.items():
            assert key in it, f"{qid}: missing field {key!r}"
            assert isinstance(it[key], typ), f"{qid}: {key!r} must be {typ.__name__}"
        extra = set(it) - set(REQUIRED) - set(OPTIONAL)
        assert not extra, f"{qid}: unexpected fields {sorted(extra)}"
        assert it["question"].strip(), f"{qid}: empty question"
        assert all(isinstance(e, str) and e for e in it["evidence"]), f"{qid}: bad evidence"
        assert all(isinstance(a, str) and a.strip() for a in it["answer_points"]), f"{qid}: bad answer_points"
        assert len(it["answer_points"]) <= 4, f"{qid}: at most 4 answer points"


def test_ids_unique_and_ordered(items):
    ids = [it["id"] for it in items]
    assert len(ids) == len(set(ids)), "duplicate ids"
    assert ids == [f"q{i:03d}" for i in range(1, len(ids) + 1)], "ids must be q001, q002, ... in order"
    questions = [(it["question"], json.dumps(it.get("history"), ensure_ascii=False)) for it in items]
    dupes = [q for q, c in Counter(questions).items() if c > 1]
    assert not dupes, f"duplicate questions: {dupes}"


def test_type_values(items):
    for it in items:
        assert it["type"] in TYPES, f"{it['id']}: bad type {it['type']!r}"


def test_answerable_consistency(items):
    for it in items:
        qid = it["id"]
        if it["type"] == "unanswerable":
            assert it["answerable"] is False, f"{qid}: unanswerable must have answerable=false"
        else:
            assert it["answerable"] is True, f"{qid}: only 'unanswerable' items may be answerable=false"
        if it["answerable"]:
            assert it["evidence"], f"{qid}: answerable item needs evidence"
            assert it["answer_points"], f"{qid}: answerable item needs answer points"
            assert it["doc"] != "none", f"{qid}: answerable item cannot have doc='none'"
        else:
            assert it["evidence"] == [], f"{qid}: unanswerable item must have no evidence"
            assert it["answer_points"] == [], f"{qid}: unanswerable item must have no answer points"
            assert it["doc"] == "none", f"{qid}: unanswerable item must have doc='none'"


def test_history_only_for_followups(items):
    for it in items:
        qid = it["id"]
        if it["type"] == "followup":
            hist = it.get("history")
            assert isinstance(hist, list) and hist, f"{qid}: followup needs non-empty history"
            for turn in hist:
                assert (
                    isinstance(turn, list)
                    and len(turn) == 2
                    and all(isinstance(t, str) and t.strip() for t in turn)
                ), f"{qid}: each history turn must be [question, answer]"
        else:
            assert "history" not in it, f"{qid}: history only allowed for followup items"


def test_doc_values(items, corpus):
    allowed = set(corpus) | {"both", "none"}
    for it in items:
        assert it["doc"] in allowed, f"{it['id']}: bad doc {it['doc']!r}"
        if it["type"] == "cross":
            assert it["doc"] == "both", f"{it['id']}: cross items must have doc='both'"


def test_evidence_unique_single_line_body(items, corpus):
    for it in items:
        qid = it["id"]
        for ev in it["evidence"]:
            assert EVIDENCE_MIN <= len(ev) <= EVIDENCE_MAX, (
                f"{qid}: evidence length {len(ev)} not in [{EVIDENCE_MIN}, {EVIDENCE_MAX}]: {ev!r}"
            )
            assert "\n" not in ev, f"{qid}: evidence spans lines: {ev!r}"
            hits = occurrences(corpus, ev)
            assert len(hits) == 1, f"{qid}: evidence occurs {len(hits)} times in corpus (need 1): {ev!r}"
            name, i = hits[0]
            line = corpus[name][i]
            assert is_body_line(line), f"{qid}: evidence is not from a body paragraph: {line.strip()[:40]!r}"
            m = _INLINE_HEADING_RE.match(line)
            if m:
                assert line.index(ev) + len(ev) > m.end(), (
                    f"{qid}: evidence lies inside the inline heading: {ev!r}"
                )


def test_evidence_matches_doc(items, corpus):
    for it in items:
        if not it["evidence"]:
            continue
        files = {occurrences(corpus, ev)[0][0] for ev in it["evidence"] if occurrences(corpus, ev)}
        if it["doc"] == "both":
            assert files == set(corpus), f"{it['id']}: doc='both' needs evidence from every corpus file"
        else:
            assert files == {it["doc"]}, f"{it['id']}: evidence comes from {sorted(files)}, doc is {it['doc']!r}"


def test_answer_points_in_evidence_paragraphs(items, corpus):
    for it in items:
        paragraphs = []
        for ev in it["evidence"]:
            for name, i in occurrences(corpus, ev):
                paragraphs.append(_squash(corpus[name][i]))
        for ap in it["answer_points"]:
            assert any(_squash(ap) in p for p in paragraphs), (
                f"{it['id']}: answer point {ap!r} not found in its evidence paragraphs"
            )


def test_set_size_and_coverage(items, corpus):
    assert len(items) >= MIN_ITEMS, f"only {len(items)} items, need >= {MIN_ITEMS}"
    types = Counter(it["type"] for it in items)
    assert set(types) == TYPES, f"missing types: {sorted(TYPES - set(types))}"
    docs = {it["doc"] for it in items}
    for name in corpus:
        assert name in docs, f"no question targets {name}"
    evidence_files = {
        occurrences(corpus, ev)[0][0] for it in items for ev in it["evidence"] if occurrences(corpus, ev)
    }
    assert evidence_files == set(corpus), "every corpus file must be covered by evidence"


def test_q001_is_the_sand_and_gravel_question(items):
    first = items[0]
    assert first["id"] == "q001"
    assert first["question"].rstrip("?？") == "莱芜区如何整改砂石问题"
    assert any("砂石资源整治工作专班" in ev for ev in first["evidence"])
