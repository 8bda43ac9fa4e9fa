"""Questions → cited answers: rewrite a follow-up, retrieve, decide whether the documents
hold an answer, generate, then check every citation in code."""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations

from .chunking import split_sentences
from .engine import Engine
from .evidence import (Passage, content_chars, dated, dated_text, figures, numbers, overlap, select_evidence,
                       select_quotes, shared_bigrams, support)
from .generators import ExtractiveGenerator, Generator
from .prompts import EXTRACTIVE_LABEL, QUOTES_LABEL, REFUSAL, REFUSAL_MARKERS, UNVERIFIED_LABEL
from .retriever import Hit, fuse, require_question
from .tokenize import issuer_place, place_names, tokenize

PROMPT_BUDGET = 140  # characters of evidence in an LLM prompt (~100 tokens, ~2 s of prefill)
EXTRACT_BUDGET = 360  # characters quoted by the extractive generator
QUOTE_BUDGET = 400  # characters quoted under an LLM's summary (item headings come on top)
EXTRACT_MIN_RATIO = 0.8  # quote only paragraphs scoring this share of the best one
SUPPORT_MIN = 0.5  # share of a sentence's character bigrams its cited paragraph must hold
SUPPORT_WITH_FIGURE = 0.3  # the same for a sentence whose figures the paragraph grounds
SALVAGE_MIN_CHARS = 6  # a clause kept from an unsupported sentence says at least this much
RESTATE_BELOW = 0.5  # share of the question's words in the best paragraph below which the LLM restates it
HISTORY_ANSWER_CHARS = 150  # an earlier answer is cut to this in the rewrite prompt
_FOLLOW_UP = re.compile(r"^(那|那么|这|该|其|此|它|他们|上述|具体|还有|另外|同时|现在)|呢[？?]?$|又是|其中|那块|这块")
_COMPARING = ("分别", "两地", "两份", "各自", "两个文件")
_CITE = re.compile(r"\[(\d+)\]")
_CLAUSE = re.compile(r"[，,；;]")
_WHOLE_END = re.compile(r"[。！？!?；;）)\]」”\"]$")
_FRAMING = re.compile(r"^(根据|依据|按照)(以上|上述)?(资料|材料|文件)(中的信息|内容|显示|所述)?[，,：:]?")


@dataclass
class Citation:
    n: int
    hit: Hit
    supporting: list[str]  # sentences of the paragraph the answer draws on (highlighted)

    def to_dict(self) -> dict:
        p = self.hit.paragraph
        return {"n": self.n, "doc_id": p.doc_id, "doc_title": self.hit.doc_title, "doc_date": self.hit.doc_date,
                "section": p.section_path, "paragraph": p.number, "text": p.text,
                "supporting": self.supporting}


@dataclass
class Answer:
    question: str
    standalone_question: str
    answer: str
    refused: bool
    generator: str
    citations: list[Citation]
    retrieved: list[Hit]
    timings: dict[str, float]
    flags: list[str] = field(default_factory=list)  # what the citation check changed
    notice: str = ""  # e.g. the fallback to extractive mode

    def to_dict(self) -> dict:
        return {"question": self.question, "standalone_question": self.standalone_question,
                "answer": self.answer, "refused": self.refused, "generator": self.generator,
                "citations": [c.to_dict() for c in self.citations],
                "retrieved": [h.to_dict() for h in self.retrieved],
                "timings": {k: round(v, 3) for k, v in self.timings.items()},
                "flags": self.flags, "notice": self.notice}


def is_follow_up(question: str) -> bool:
    """Whether a question is worded as a follow-up: short, or opening or ending like one
    (那…呢, 其中…, …又是…)."""
    return len(question) <= 8 or bool(_FOLLOW_UP.search(question))


def may_continue(question: str, previous: str) -> bool:
    """Whether a question may lean on the previous one without saying so: it names no
    place while the previous question did. A weaker sign than ``is_follow_up``: it may
    start a new topic, so without an LLM rewrite that keeps the topic it takes only the
    previous question's place (``carry_place``), not its topic."""
    return bool(place_names(previous)) and not place_names(question)


def carry_place(question: str, previous: str) -> str:
    """「整改落实方案是哪天审议通过的？」 after a question about 济南市 asks about 济南市:
    each document speaks for one place, and the same words fit every place's report."""
    places = place_names(previous)
    return places[0] + question if len(places) == 1 else question


def is_comparison(question: str) -> bool:
    """A question about several places or documents at once: 「莱芜区和济南市分别…」, 「两地…」."""
    return len(set(place_names(question))) > 1 or any(w in question for w in _COMPARING)


def keeps_topic(rewritten: str, question: str, previous: str) -> bool:
    """A small model sometimes answers instead of rewriting, repeats the earlier question,
    or drops the topic; keep its rewrite only if it is a question-sized text that carries
    most of the earlier topic and most of what the follow-up itself adds (「两新」组织)."""
    if len(rewritten) > 80 or rewritten == question:
        return False
    asked, earlier = set(tokenize(question)), set(tokenize(previous))
    topic = earlier - asked - set(place_names(question))
    added = asked - earlier
    return all(not words or sum(w in rewritten for w in words) / len(words) >= 0.5
               for words in (topic, added))


def rule_rewrite(question: str, history: list[tuple[str, str]]) -> str:
    """Without an LLM: 「那济南市呢？」 after 「莱芜区如何整改砂石问题」 swaps the place;
    anything else is read together with the previous question."""
    previous = history[-1][0].rstrip("？?。 ")
    asked = question.strip()
    new_places, old_places = place_names(asked), place_names(previous)
    if new_places and old_places and len(content_chars(asked)) <= len(new_places[0]) + 4:
        return previous.replace(old_places[0], new_places[0]) + "？"
    return f"{previous}，{asked}"


def rule_standalone(question: str, history: list[tuple[str, str]]) -> str:
    """The question to search when no LLM rewrites it: a follow-up read with the previous
    question (``rule_rewrite``), one that only lacks a place given the previous place."""
    if not history:
        return question
    previous = history[-1][0]
    if is_follow_up(question):
        return rule_rewrite(question, history)
    return carry_place(question, previous) if may_continue(question, previous) else question


def trim_truncated(draft: str) -> str:
    """The draft up to its last whole clause, if the token limit cut it off.

    The model closes its answers with 。 or a citation mark; a draft ending otherwise was
    cut mid-clause, often mid-number ("出土器物10" for 1000-odd), and that fragment would
    be checked as an invented figure."""
    text = draft.rstrip()
    if not text or _WHOLE_END.search(text):
        return draft
    start = max(text.rfind(c) for c in "。！？!?]") + 1  # the unfinished sentence
    cut = max(text.rfind(c, start) for c in "，,；;、")
    return text[:cut] + "。" if cut > start else text[:start]


def evidence_strength(question: str, hits: list[Hit]) -> float:
    """How well the best paragraphs cover the question: share of the question's words
    found in the top three paragraphs; zero if a number the question names is absent from
    them, or none of the places it names is in them (or is the place they were issued for).

    Dense similarity alone barely separates answerable from unanswerable questions in
    this domain (every question is about rectification work); missing specifics do.
    """
    if not hits:
        return 0.0
    text = "".join(h.paragraph.text for h in hits[:3])
    scopes = {issuer_place(h.doc_title) for h in hits[:3]}
    if not numbers(question) <= numbers(text):
        return 0.0
    places = place_names(question)
    if places and not any(p in text or p in scopes for p in places):
        return 0.0  # the question is about a place the best paragraphs never mention
    return word_share(question, text)


def word_share(question: str, text: str) -> float:
    """Share of the question's words (jieba tokens, no stop words) found in the text."""
    words = set(tokenize(question))
    if not words:
        return 0.0
    return sum(w in text for w in words) / len(words)


class Answerer:
    def __init__(self, engine: Engine, generator: Generator, notice: str = ""):
        self.engine, self.generator, self.notice = engine, generator, notice

    def standalone(self, question: str, history: list[tuple[str, str]]) -> str:
        if not history:
            return question
        if not is_follow_up(question) and not may_continue(question, history[-1][0]):
            return question
        turns = [(q, a[:HISTORY_ANSWER_CHARS]) for q, a in history[-self.engine.config.max_history_turns:]]
        rewritten = self.generator.rewrite(question, turns)
        if rewritten and keeps_topic(rewritten, question, turns[-1][0]):
            return rewritten
        return rule_standalone(question, turns)

    def ask(self, question: str, history: list[tuple[str, str]] | None = None, k: int | None = None,
            doc_ids=None, on_token: Callable[[str], None] | None = None) -> Answer:
        question = require_question(question)
        history = list(history or [])
        timings: dict[str, float] = {}
        start = time.perf_counter()
        standalone = self.standalone(question, history)
        timings["rewrite_s"] = time.perf_counter() - start
        keep = k or self.engine.config.k
        # Read twice as deep as kept, for fusion with a restated search below: a paragraph
        # sixth in one ranking and second in the other must still count both ranks.
        t = time.perf_counter()
        ranking = self.engine.search(standalone, 2 * keep, doc_ids)
        hits = ranking[:keep]
        timings["retrieve_s"] = time.perf_counter() - t
        searched: list[str] = []  # how the question was searched, besides as asked
        if standalone == question and hits and word_share(question, hits[0].paragraph.text) < RESTATE_BELOW:
            # Few of the question's words are in the best paragraph: it is likely worded
            # in everyday language. Search again with the model's restatement in the
            # documents' own style, and fuse the two rankings. (A follow-up the model has
            # just rewritten is not restated too: one model call before answering is enough.)
            t = time.perf_counter()
            restated = self.generator.restate(standalone)
            timings["rewrite_s"] += time.perf_counter() - t
            if restated:
                searched.append(f"also searched as restated in the documents' style: {restated}")
                t = time.perf_counter()
                again = self.engine.search(restated, 2 * keep, doc_ids)
                hits = fuse([ranking, again], keep, self.engine.config.rrf_k)
                timings["retrieve_s"] += time.perf_counter() - t

        def finish(text: str, refused: bool, citations: list[Citation], flags: list[str]) -> Answer:
            timings.setdefault("first_token_s", time.perf_counter() - start)
            timings["total_s"] = time.perf_counter() - start
            return Answer(question, standalone, text, refused, self.generator.name, citations, hits,
                          timings, searched + flags, self.notice)

        if evidence_strength(standalone, hits) < self.engine.config.refusal_threshold:
            refusal = REFUSAL.format(question=standalone)
            if on_token:
                on_token(refusal)
            return finish(refusal, True, [], ["retrieval evidence below the refusal threshold"])

        comparing = is_comparison(standalone)
        if self.generator.uses_llm:
            # The model picks what it cites; a comparison is shown every document's side.
            passages = select_evidence(hits, PROMPT_BUDGET, each_document=comparing)
        else:
            passages = extract(hits, comparing)
        raw = []
        for piece in self.generator.generate(standalone, passages):
            timings.setdefault("first_token_s", time.perf_counter() - start)
            raw.append(piece)
            if on_token:
                on_token(piece)
        whole = "".join(raw)
        draft = trim_truncated(whole) if self.generator.uses_llm else whole
        text, citations, flags, refused = check_citations(draft, passages, standalone)
        if draft != whole:
            flags.insert(0, "the answer reached the token limit; kept its whole clauses")
        if refused and not comparing:
            return finish(REFUSAL.format(question=standalone), True, [], flags)
        if refused or not citations:
            # The model's wording could not be traced to the passages, but it invented no
            # figure; or, in a comparison whose places retrieval found, it mixed up their
            # figures or dates (a small model often gives one side's date for both). The
            # retrieved evidence is shown instead of a possibly wrong summary.
            flags.append("the model's comparison did not hold; quoted each document instead" if refused
                         else "no generated sentence was supported; quoted the documents instead")
            quotes = extract(hits, comparing)
            quoted = "".join(ExtractiveGenerator(UNVERIFIED_LABEL).generate(standalone, quotes))
            text, citations, _, _ = check_citations(quoted, quotes, standalone)
            return finish(text, False, citations, flags)
        if self.generator.uses_llm:
            # The model's summary is short (decoding runs ~25 tokens/s on two cores); the
            # facts behind it are quoted from the paragraphs it cited, so figures and names
            # reach the reader verbatim.
            cited = {c.hit.paragraph.id for c in citations}
            quoted = [p for p in passages if p.hit.paragraph.id in cited]
            prompt_number = {p.hit.paragraph.id: p.n for p in quoted}
            drawn_on = {c.hit.paragraph.id: c.supporting for c in citations}
            quotes = select_quotes([p.hit for p in quoted], QUOTE_BUDGET, drawn_on)
            # Cite each quote with its passage's number in the prompt, for the check below.
            lines = [f"{q.text}[{prompt_number[q.hit.paragraph.id]}]" for q in quotes]
            text, citations, flags, _ = check_citations("\n".join([draft, QUOTES_LABEL, *lines]),
                                                        passages, standalone)
        return finish(text, False, citations, flags)


def extract(hits: list[Hit], each_document: bool = False) -> list[Passage]:
    """What the extractive generator, or an unverifiable LLM answer's fallback, quotes
    (for a comparison, each document's best sentence first)."""
    return select_evidence(hits, EXTRACT_BUDGET, min_ratio=EXTRACT_MIN_RATIO, each_document=each_document)


def check_citations(raw: str, passages: list[Passage], question: str
                    ) -> tuple[str, list[Citation], list[str], bool]:
    """Verify an answer sentence by sentence against the passages it may cite.

    Returns (answer text with checked citations numbered 1.. in order of use, citations,
    flags describing every change, whether the model declined to answer).
    """
    flags: list[str] = []
    by_n = {p.n: p for p in passages}
    # The model saw only the passages' selected sentences: a figure it states that is in
    # none of them is invented, even if the paragraph holds it in another context
    # (「减税退税降费超过1000亿元」 does not ground 1000亿元 as a GDP). Quotes under the
    # answer come from the whole paragraphs.
    shown_numbers = numbers(question).union(*(numbers(dated_text(p.text, p.hit.doc_date)) for p in passages))
    paragraph_numbers = numbers(question).union(*(numbers(p.hit.paragraph.text) for p in passages))
    known_numbers = shown_numbers
    kept: list[tuple[int, str, list[int]]] = []  # (line, sentence, passage numbers)
    labels: dict[int, str] = {}  # lines that are our own labels, kept as they are
    dropped: list[str] = []  # sentences removed as unsupported
    declined = False
    for line_no, line in enumerate(raw.strip().split("\n")):
        if line.strip() in (EXTRACTIVE_LABEL, UNVERIFIED_LABEL, QUOTES_LABEL):
            labels[line_no] = line.strip()
            if line.strip() == QUOTES_LABEL:
                known_numbers = paragraph_numbers
            continue
        for sentence in split_sentences(line):
            body = _FRAMING.sub("", _CITE.sub("", sentence).strip())
            if not content_chars(body):
                continue
            if any(m in body for m in REFUSAL_MARKERS):
                declined = declined or not kept  # a refusal that opens the answer
                flags.append(f"model said the documents do not answer: {body}")
                continue
            unsupported = numbers(body) - known_numbers
            cited = [int(n) for n in _CITE.findall(sentence)]
            valid = [] if unsupported else _supporting_passages(body, cited, by_n, question, flags)
            if valid:
                kept.append((line_no, body, valid))
                continue
            # A sentence joining a right fact and a wrong one (the other document's figure,
            # an invented date) keeps its supported clauses, each cited on its own.
            # A clause speaks for the place its sentence names ("济南市…，下设6个…"), and
            # one the answer already says is not repeated.
            clauses = [c.strip() for c in _CLAUSE.split(body.rstrip("。！？!?"))]
            places = place_names(body)
            said = content_chars("".join(b for _, b, _ in kept))
            backed = [(c, v) for c in clauses if len(content_chars(c)) >= SALVAGE_MIN_CHARS
                      and content_chars(c) not in said
                      and (v := _supporting_passages(c if not places or place_names(c) else places[0] + c,
                                                     [], by_n, question, []))]
            if len(clauses) > 1 and backed:
                flags.append(f"kept {len(backed)} of {len(clauses)} clauses, removed the rest: {body}")
                kept.extend((line_no, c + "。", v) for c, v in backed)
                continue
            if unsupported:
                flags.append(f"removed a sentence with numbers in no retrieved paragraph "
                             f"({', '.join(sorted(unsupported))}): {body}")
            else:
                flags.append(f"removed an unsupported sentence: {body}")
            dropped.append(body)
    if not kept and (declined or any(numbers(b) for b in dropped)):
        # The model declined, or the figures it gave are in no passage or belong to another
        # year or place: the documents do not state what was asked.
        return "", [], flags, True
    order: dict[int, int] = {}  # passage number → citation number, in order of first use
    for _, _, valid in kept:
        for n in valid:
            order.setdefault(n, len(order) + 1)
    lines: dict[int, str] = dict(labels)
    highlights: dict[int, list[str]] = {}
    for i, (line_no, body, valid) in enumerate(kept):
        # A run of sentences backed by the same passages is cited once, at its end.
        run_continues = i + 1 < len(kept) and kept[i + 1][0] == line_no and kept[i + 1][2] == valid
        marks = "" if run_continues else "".join(f"[{order[n]}]" for n in valid)
        lines[line_no] = lines.get(line_no, "") + body + marks
        for n in valid:
            for s in supporting_sentences(body, by_n[n].hit.paragraph.text):
                if s not in highlights.setdefault(order[n], []):
                    highlights[order[n]].append(s)
    text = "\n".join(lines[k] for k in sorted(lines))
    citations = [Citation(new, by_n[old].hit, highlights[new]) for old, new in order.items()]
    return text, citations, flags, False


def _supporting_passages(body: str, cited: list[int], by_n: dict[int, Passage], question: str,
                         flags: list[str]) -> list[int]:
    """The passages that back a sentence: the cited ones that do, else the best one, else
    (a sentence comparing two documents) one passage per clause."""
    def scores(text: str) -> dict[int, float]:
        return {n: support(text, dated(p.hit), issuer_place(p.hit.doc_title), question)
                for n, p in by_n.items()}

    whole = scores(body)
    # A figure found in the paragraph (and, with a year, bound to it) is strong evidence of
    # its own, so a sentence stating one needs less wording in common.
    needed = SUPPORT_WITH_FIGURE if figures(body) else SUPPORT_MIN
    valid = sorted({n for n in cited if whole.get(n, 0.0) >= needed})
    for n in sorted(set(cited) - set(valid)):
        reason = "no such passage" if n not in by_n else "the passage does not support it"
        flags.append(f"removed [{n}] ({reason}): {body}")
    if valid or not whole:
        return valid
    best = max(whole, key=lambda n: whole[n])
    if whole[best] >= needed:
        flags.append(f"attached [{best}]: {body}")
        return [best]
    def clause_by_clause() -> list[int]:
        """Each clause's best passage, if every clause of a compound sentence has one."""
        clauses = [c for c in _CLAUSE.split(body) if len(content_chars(c)) >= 4]
        backing = set()
        for clause in clauses if len(clauses) > 1 else []:
            by_clause = scores(clause)
            n = max(by_clause, key=lambda n: by_clause[n])
            if by_clause[n] < SUPPORT_MIN:
                return []
            backing.add(n)
        return sorted(backing)

    if backing := clause_by_clause():
        flags.append(f"attached {backing} clause by clause: {body}")
        return backing
    # One clause stating two documents' figures (「分别已办结31件和45件」) is backed by two
    # passages together, if each grounds a figure the other does not.
    stated = figures(body)
    for a, b in combinations(sorted(by_n), 2):
        own_a = stated & figures(by_n[a].hit.paragraph.text)
        own_b = stated & figures(by_n[b].hit.paragraph.text)
        if own_a - own_b and own_b - own_a and support(
                body, dated(by_n[a].hit) + "\n" + dated(by_n[b].hit), "", question) >= needed:
            flags.append(f"attached [{a}, {b}] together: {body}")
            return [a, b]
    return []


HIGHLIGHT_MIN_SHARED = 8  # bigrams a long paragraph sentence must share with a summary


def supporting_sentences(answer_sentence: str, paragraph: str) -> list[str]:
    """The paragraph's sentences an answer sentence draws on (at least its best one): the
    mostly-quoted ones, and long ones a summarising sentence takes a phrase from."""
    scored = [(overlap(s, answer_sentence), shared_bigrams(s, answer_sentence), s)
              for s in split_sentences(paragraph)]
    if not scored:
        return []
    drawn = [s for share, shared, s in scored if share >= SUPPORT_MIN or shared >= HIGHLIGHT_MIN_SHARED]
    return drawn or [max(scored, key=lambda x: (x[0], x[1]))[2]]
