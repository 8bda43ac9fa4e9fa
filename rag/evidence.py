"""From retrieved paragraphs to the few sentences an answer is built from, and back.

A small local LLM reads ~60-80 prompt tokens a second on two cores, so the prompt holds
the sentences that matter, not whole paragraphs: the chunks retrieval matched (each one
or two sentences) from the best paragraphs, within a character budget.

What an answer may say about them is decided in ``verify.py``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .chunking import split_sentences
from .retriever import Hit

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_ITEM_NUMBER = re.compile(r"^\s*[(（]?\d{1,3}[)）.、．](?!\d)", re.MULTILINE)  # 16.针对… (12)推动…
_NOT_CONTENT = re.compile(r"[\s\W_]+", re.UNICODE)
ENUMERATION = re.compile(r"^[一二三四五六七八九十]+是")
HEADING_CHARS = 16  # an enumerated sentence this short is an item's heading: 一是强化组织领导。


@dataclass
class Passage:
    """One numbered source in the prompt: a retrieved paragraph and its selected sentences."""
    n: int
    hit: Hit
    sentences: list[str] = field(default_factory=list)  # in paragraph order

    @property
    def text(self) -> str:
        return "".join(self.sentences)


def matched_sentences(hit: Hit) -> dict[str, float]:
    """The sentences of the hit's paragraph that retrieval matched, each with the fused
    score of the best chunk it is in."""
    scores: dict[str, float] = {}
    for match in hit.matches:
        for sentence in split_sentences(match.text):
            if sentence.strip() and sentence in hit.paragraph.text:
                scores[sentence] = max(scores.get(sentence, 0.0), match.score)
    return scores


def select_evidence(hits: list[Hit], budget: int, max_passages: int = 3, min_ratio: float = 0.0,
                    each_document: bool = False) -> list[Passage]:
    """The best-matching sentences of the best paragraphs, at most ``budget`` characters.

    Only paragraphs scoring at least ``min_ratio`` of the best one are used: a quote from a
    paragraph that merely shares words with the question is a wrong citation. With
    ``each_document`` (a question comparing documents), the best sentence of each
    document's best paragraph comes first, so every side of the comparison is shown.

    Sentences are taken in order of the fused score of the chunk they belong to. A sentence
    longer than the remaining budget is skipped rather than cut, so every quoted sentence
    is whole and can be checked against its paragraph.
    """
    floor = hits[0].score * min_ratio if hits else 0.0
    ranked = sorted(((score, h, sentence) for h, hit in enumerate(hits) if hit.score >= floor
                     for sentence, score in matched_sentences(hit).items()),
                    key=lambda x: (-x[0], x[1]))
    leads: set[tuple[int, str]] = set()  # each document's best sentence, if asked for
    if each_document:
        best_of: dict[str, tuple[int, str]] = {}
        for _, h, sentence in ranked:
            best_of.setdefault(hits[h].paragraph.doc_id, (h, sentence))
        leads = set(best_of.values())
    chosen: dict[int, list[str]] = {}
    used = 0
    for _, h, sentence in sorted(ranked, key=lambda x: (x[1], x[2]) not in leads):
        if h not in chosen and len(chosen) >= max_passages:
            continue
        if used + len(sentence) > budget:
            continue
        chosen.setdefault(h, []).append(sentence)
        used += len(sentence)
    passages = []
    for h in sorted(chosen):
        text = hits[h].paragraph.text
        ordered = sorted(set(chosen[h]), key=text.find)
        passages.append(Passage(len(passages) + 1, hits[h], ordered))
    return passages


def select_quotes(hits: list[Hit], budget: int, drawn_on: dict[str, list[str]] | None = None
                  ) -> list[Passage]:
    """What is quoted under an LLM's summary from the paragraphs it cited, at most
    ``budget`` characters, in paragraph order: first the sentences the summary draws on
    (``drawn_on``: paragraph id → sentences), then those that carry facts (figures, named
    documents and terms in 《》 or “”) and match the question.

    Each enumerated item of a paragraph (一是…, 二是…) gives its best sentence before any
    item gives a second one, so a 一是…四是… answer is quoted across all its measures
    rather than at length on the first. An item's own heading (一是强化组织领导。) is
    quoted before its sentences, outside the budget, so the answer keeps its structure.
    """
    drawn_on = drawn_on or {}
    candidates = []  # (round, -score, hit, sentence); round 0 holds each item's best sentence
    headings: dict[tuple[int, int], str] = {}  # (hit, item) → heading sentence
    item_of: dict[tuple[int, str], int] = {}
    for h, hit in enumerate(hits):
        relevance = matched_sentences(hit)
        top = max(relevance.values(), default=0.0) or 1.0
        scored: dict[int, list[tuple[float, str]]] = {}
        item = 0
        for sentence in split_sentences(hit.paragraph.text):
            if ENUMERATION.match(sentence):
                item += 1
                if len(sentence) <= HEADING_CHARS:
                    headings[(h, item)] = sentence
                    continue
            if not content_chars(sentence):
                continue
            facts = len(figures(sentence)) + sentence.count("《") + sentence.count("“")
            scored.setdefault(item, []).append((relevance.get(sentence, 0.0) / top + min(facts, 2) / 2, sentence))
            item_of[(h, sentence)] = item
        for sentences in scored.values():
            best = max(score for score, _ in sentences)
            candidates += [(-1 if sentence in drawn_on.get(hit.paragraph.id, ()) else int(score < best),
                            -score, h, sentence) for score, sentence in sentences]
    chosen: dict[int, list[str]] = {}
    used = 0
    for _, _, h, sentence in sorted(candidates):
        if used + len(sentence) <= budget and sentence not in chosen.get(h, []):
            chosen.setdefault(h, []).append(sentence)
            used += len(sentence)
    passages = []
    for h in sorted(chosen):
        items = {item_of[(h, s)] for s in chosen[h]}
        quoted = chosen[h] + [headings[(h, i)] for i in sorted(items) if (h, i) in headings]
        passages.append(Passage(len(passages) + 1, hits[h], sorted(quoted, key=hits[h].paragraph.text.find)))
    return passages


def content_chars(text: str) -> str:
    """Text without whitespace, punctuation and citation marks: what support is measured on."""
    return _NOT_CONTENT.sub("", re.sub(r"\[\d+\]", "", text))


def numbers(text: str) -> set[str]:
    """The numbers a text states: not its citation marks, nor the item number a line opens
    with (「16.针对…的问题:」 numbers a list item; it grounds no "16处")."""
    return set(_NUMBER.findall(_ITEM_NUMBER.sub("", re.sub(r"\[\d+\]", "", text))))


def _bigrams(text: str) -> set[str]:
    s = content_chars(text)
    return {s[i:i + 2] for i in range(len(s) - 1)}


def overlap(text: str, other: str) -> float:
    """Share of the character bigrams of ``text`` that occur in ``other`` (0..1)."""
    bigrams = _bigrams(text)
    if not bigrams:
        return 0.0
    o = content_chars(other)
    return sum(b in o for b in bigrams) / len(bigrams)


def shared_bigrams(text: str, other: str) -> int:
    return len(_bigrams(text) & _bigrams(other))


_YEAR = re.compile(r"^(19|20)\d\d$")


def figures(text: str) -> set[str]:
    """The numbers of a text that are not years."""
    return {n for n in numbers(text) if not _YEAR.match(n)}
