"""Per-question metrics, and their means overall and by question type.

Retrieval metrics read the ``retrieved`` list (``rag search --json`` dicts); answer metrics
read the whole ``rag ask --json`` object. A per-question dict holds only the metrics that
apply to that question (no hit@k for an unanswerable one, no refusal accuracy for an
answerable one), so each mean is over the questions it applies to.
"""
from __future__ import annotations

import re
import unicodedata
from collections import defaultdict

import numpy as np

from .questions import Item

HIT_AT = (1, 3, 5, 10)
TIMINGS = ("rewrite_s", "retrieve_s", "first_token_s", "total_s")
# Display order; "hit" and "all_evidence" stand for their "@k" variants.
RETRIEVAL_METRICS = ("hit", "mrr", "all_evidence")
ANSWER_METRICS = ("key_fact_coverage", "citation_precision", "citation_recall", "unsupported_numbers",
                  "answers_with_unsupported_numbers", "answers_with_misattributed_figures",
                  "unanswerable_with_figure", "refusal_accuracy", "false_refusals")
_ORDER = RETRIEVAL_METRICS + ANSWER_METRICS + TIMINGS

# Citation markers such as [1], [2,3], 【1】 are not facts; drop them before reading numbers.
_CITATION = re.compile(r"[\[【]\s*\d+(?:\s*[,，、-]\s*\d+)*\s*[\]】]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
QUOTES_MARK = "原文要点："  # the line after which an answer quotes its paragraphs verbatim


def squash(text: str) -> str:
    """Text without whitespace; NFKC so full-width and half-width forms compare equal."""
    return "".join(unicodedata.normalize("NFKC", text).split())


def squash_punctuation(text: str) -> str:
    """``squash`` and also drop punctuation (Unicode category P*: ，。、“”《》（） …)."""
    return "".join(c for c in squash(text) if not unicodedata.category(c).startswith("P"))


def holds_evidence(text: str, evidence) -> bool:
    squashed = squash(text)
    return any(e and e in squashed for e in map(squash, evidence))


def first_hit_rank(retrieved: list[dict], evidence) -> int | None:
    """1-based position of the first retrieved text holding an evidence string."""
    for rank, hit in enumerate(retrieved, start=1):
        if holds_evidence(hit["text"], evidence):
            return rank
    return None


def retrieval_metrics(item: Item, retrieved: list[dict], k: int) -> dict[str, float]:
    """hit@n for n ≤ k, MRR within k, and for cross-document questions whether every
    evidence string is in the top k. Empty for questions without evidence."""
    if not item.answerable or not item.evidence:
        return {}
    retrieved = retrieved[:k]
    rank = first_hit_rank(retrieved, item.evidence)
    m = {f"hit@{n}": float(rank is not None and rank <= n) for n in HIT_AT if n <= k}
    m["mrr"] = 1.0 / rank if rank else 0.0
    if item.type == "cross":
        m[f"all_evidence@{k}"] = float(all(first_hit_rank(retrieved, [e]) for e in item.evidence))
    return m


def _canonical_number(number: str) -> str:
    """'013' → '13', '3.50' → '3.5', '3.0' → '3', so one value has one spelling."""
    whole, _, fraction = number.partition(".")
    whole = whole.lstrip("0") or "0"
    fraction = fraction.rstrip("0")
    return f"{whole}.{fraction}" if fraction else whole


def numbers(text: str) -> set[str]:
    """Arabic-digit numbers in the text (decimals included), citation markers excluded.
    Chinese numerals (三、十五) are not read: the check is for figures like 2022, 3.5, 13个."""
    text = _CITATION.sub(" ", unicodedata.normalize("NFKC", text))
    return {_canonical_number(n) for n in _NUMBER.findall(text)}


def unsupported_numbers(answer: str, sources: list[str]) -> list[str]:
    """Numbers of the answer that appear in none of the source texts (retrieved paragraphs
    and the question): likely invented, or computed by the model."""
    supported = set().union(*(numbers(s) for s in sources)) if sources else set()
    return sorted(numbers(answer) - supported)


# A figure as written: digits (and 万/亿) with the character after them, its unit (元, %,
# 处…). What the answer ties to it are the two characters before it, once the words that
# only link a figure to its attribute (为, 是, 达到, 共…) are dropped.
_FIGURE = re.compile(r"(?<![A-Za-z\d.])(\d+(?:\.\d+)?(?:万|亿)?)([^\d\s，,。；;、）)\]】])?")
_LINK = re.compile(r"(为|是|达到|达|约|共计|共|累计|合计|超过|突破|了|已|分别|有)+$")
_YEARISH = re.compile(r"^(19|20)\d\d$")
ATTRIBUTE_NEAR = 12  # characters before a figure in the source within which its attribute must stand


_COUNTERS = set("个家名项处条件所户人座批次台辆场")  # what a counted figure is followed by the noun of
_ITEM = re.compile(r"^\s*\d{1,2}[.、)）]$")  # 1. 2、 opening a line number a list


def _figures_with_attribute(text: str) -> list[tuple[str, str, str]]:
    """(figure with its unit, the two characters the text ties to it before, the two it
    counts after: 7个街镇) for each figure that is not a year, part of a date (2022年,
    9月16日), an item number opening a line (1.) or part of a name (“3+3”)."""
    text = _CITATION.sub(" ", unicodedata.normalize("NFKC", text))
    out = []
    for m in _FIGURE.finditer(text):
        number, unit = m.group(1), m.group(2) or ""
        if unit in ("年", "月", "日") or (_YEARISH.match(number) and unit in ("", "年")):
            continue
        line_start = text.rfind("\n", 0, m.start()) + 1
        if _ITEM.match(text[line_start:m.end()]) or unit == "+":
            continue
        # what precedes it in its own clause: an item number opening a line, (34) or 9.,
        # has nothing before it
        before = re.split(r"[，,。；;：:、！？!?\n(（]", text[max(0, m.start() - 8):m.start()])[-1]
        before = squash_punctuation(_LINK.sub("", before))
        after = squash_punctuation(re.split(r"[，,。；;：:、！？!?\n]", text[m.end():m.end() + 6])[0])
        out.append((number + unit, before[-2:], after[:2] if unit in _COUNTERS else ""))
    return out


def misattributed_figures(answer: str, cited: list[str]) -> list[str]:
    """Figures of the answer that no cited paragraph states with the same unit next to the
    same words: 「总投资为2.7万平方米」 against 「建筑面积达2.7万平方米」, or 「同比增长4.84%」
    stated for a year the paragraph does not give it for is *not* caught here (years are
    the product's own check); this is the eval's independent reading, kept simple."""
    wrong = []
    sources = [unicodedata.normalize("NFKC", c) for c in cited]
    for figure, attribute, counted in _figures_with_attribute(answer):
        stated = False
        for source in sources:
            for m in re.finditer(re.escape(figure), source):
                if m.start() > 0 and source[m.start() - 1].isdigit():
                    continue
                near = squash_punctuation(source[max(0, m.start() - ATTRIBUTE_NEAR):m.start()])
                following = squash_punctuation(source[m.end():m.end() + 6])
                if not attribute or attribute in near or attribute in following \
                        or len(counted) == 2 and following.startswith(counted):  # 7个街镇 as the source counts it
                    stated = True
                    break
            if stated:
                break
        if not stated:
            wrong.append(figure)
    return wrong


def answer_metrics(item: Item, record: dict) -> dict[str, float]:
    """Metrics of one ``rag ask --json`` object against its question."""
    answer = record.get("answer") or ""
    refused = bool(record.get("refused"))
    citations = record.get("citations") or []
    m: dict[str, float] = {}
    if item.answerable:
        m["false_refusals"] = float(refused)
        if item.answer_points:
            found = squash_punctuation(answer)
            m["key_fact_coverage"] = sum(squash_punctuation(p) in found for p in item.answer_points
                                         ) / len(item.answer_points)
        if item.evidence:
            good = [holds_evidence(c.get("text") or "", item.evidence) for c in citations]
            if good:
                m["citation_precision"] = sum(good) / len(good)
            m["citation_recall"] = float(any(good))
    else:
        m["refusal_accuracy"] = float(refused)
        asked = numbers(item.question)
        m["unanswerable_with_figure"] = float(not refused and bool(numbers(answer) - asked))
    if not refused:
        # Only the model's own wording is read: quotes under 原文要点 are the paragraphs' text.
        summary = answer.split(QUOTES_MARK)[0]
        m["answers_with_misattributed_figures"] = float(bool(misattributed_figures(
            summary, [c.get("text") or "" for c in citations])) or not item.answerable and bool(
            numbers(summary) - numbers(item.question)))
    sources = [r.get("text") or "" for r in record.get("retrieved") or []]
    sources += [item.question, record.get("standalone_question") or ""]
    invented = unsupported_numbers(answer, sources)
    m["unsupported_numbers"] = float(len(invented))
    m["answers_with_unsupported_numbers"] = float(bool(invented))
    timings = record.get("timings") or {}
    for name, value in ({} if timings.get("llm_replayed") else timings).items():  # a replay is not timed
        if name in TIMINGS and isinstance(value, (int, float)):
            m[name] = float(value)
    return m


def metric_base(name: str) -> str:
    """'hit@5' → 'hit', 'total_s_p95' → 'total_s', 'mrr' → 'mrr'."""
    base = name.partition("@")[0]
    if base.endswith(("_p50", "_p95")) and base[:-4] in TIMINGS:
        return base[:-4]
    return base


def metric_order(name: str) -> tuple[int, int]:
    """Sort key: the display order, hit@1 before hit@10, p50 before p95."""
    base = metric_base(name)
    suffix = "".join(c for c in name[len(base):] if c.isdigit())  # "@10" → 10, "_p95" → 95
    return _ORDER.index(base), int(suffix or 0)


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    return float(np.percentile(values, q))


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    """Means of the per-question metrics (p50/p95 for latencies), with the question count."""
    values: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        for name, value in row.items():
            values[name].append(value)
    out: dict[str, float] = {"questions": len(rows)}
    for name in sorted(values, key=metric_order):
        if name in TIMINGS:
            out[f"{name}_p50"] = round(percentile(values[name], 50), 3)
            out[f"{name}_p95"] = round(percentile(values[name], 95), 3)
        else:
            out[name] = round(sum(values[name]) / len(values[name]), 4)
    return out


def aggregate(items: list[Item], rows: list[dict[str, float]]) -> dict:
    """{"overall": summary, "by_type": {type: summary}}; types in order of first appearance."""
    types = list(dict.fromkeys(item.type for item in items))
    return {"overall": summarise(rows),
            "by_type": {t: summarise([r for item, r in zip(items, rows) if item.type == t])
                        for t in types}}
