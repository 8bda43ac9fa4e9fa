"""Questions → cited answers: rewrite a follow-up, retrieve, decide whether the documents
hold an answer, generate, then check every citation in code."""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .cite import Citation, cite
from .claims import Clause, relative_years
from .decide import Decision, Finding, decide, states_focus
from .engine import Engine
from .evidence import Passage, content_chars, numbers, select_evidence, select_quotes
from .generators import ExtractiveGenerator, Generator
from .profile import ZH_GOV
from .prompts import MISSING_PART, QUOTES_LABEL, REFUSAL, REFUSAL_NEARBY, UNVERIFIED_LABEL
from .retriever import Hit, require_question
from .tokenize import issuer_place, mentions_place, names_place, place_names, tokenize
from .verify import Verdict, Verification, supporting_sentences, verify

__all__ = ["Answer", "Answerer", "Citation", "rule_standalone", "is_follow_up"]

PROMPT_BUDGET = 140  # characters of evidence in an LLM prompt (~100 tokens, ~2 s of prefill)
EXTRACT_BUDGET = 360  # characters quoted by the extractive generator
QUOTE_BUDGET = 400  # characters quoted under an LLM's summary (item headings come on top)
EXTRACT_MIN_RATIO = 0.8  # quote only paragraphs scoring this share of the best one
RESTATE_BELOW = 0.5  # share of the question's words in the best paragraph below which the LLM restates it
HISTORY_ANSWER_CHARS = 150  # an earlier answer is cut to this in the rewrite prompt
_FOLLOW_UP = ZH_GOV.follow_up  # the profile's follow-up cues
_COMPARING = ZH_GOV.comparing
_LABEL_NUMBER = re.compile(r"(第|图|表|附件|附表)\s*\d+|\d+\s*(号|项|条|款)")  # labels, not counts
_WHOLE_END = re.compile(r"[。！？!?；;）)\]」”\"]$")


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
    """How well the retrieved paragraphs cover the question: share of the question's words
    found in the top three; zero if a number the question names is in none of the
    retrieved paragraphs, or none of the places it names is in them (or is the place
    they were issued for).

    A year counts as named by a paragraph when it says it, says 今年/去年 of it, or its
    document is of that year or the one after (a report looks back on the past year).
    Numbers that label rather than count (图3, 第8项) are not figures to look for.
    Dense similarity alone barely separates answerable from unanswerable questions in
    this domain (every question is about rectification work); missing specifics do.
    """
    if not hits:
        return 0.0
    # The question may name the document (《…暂行办法》) or the heading a paragraph is under.
    text = "".join(h.doc_title + "".join(h.paragraph.section) + h.paragraph.text for h in hits[:3])
    everything = "".join(relative_years(h.paragraph.text, h.doc_date) + h.doc_title for h in hits)
    years = {str(int(h.doc_date[:4]) - back) for h in hits if h.doc_date[:4].isdigit() for back in (0, 1)}
    asked = numbers(_LABEL_NUMBER.sub("", question))
    if not asked <= numbers(everything) | years:
        return 0.0
    scopes = {issuer_place(h.doc_title) for h in hits}
    places = place_names(question)
    if places and not any(names_place(everything, p) or any(s and mentions_place(p, s) for s in scopes)
                          for p in places):
        return 0.0  # the question is about a place the retrieved paragraphs never mention
    return word_share(question, text)


def word_share(question: str, text: str) -> float:
    """Share of the question's words (jieba tokens, no stop words) found in the text."""
    words = set(tokenize(question))
    if not words:
        return 0.0
    return sum(w in text for w in words) / len(words)


class Answerer:
    """The answer pipeline, one stage per step: rewrite (a follow-up as a standalone
    question) → retrieve (restated in the documents' style when worded in everyday
    language; the retriever fuses the rankings) → decide (``decide.py``: is what is asked
    for in the evidence?) → generate (any ``Generator``: clauses with the passages they
    draw on) → verify (``verify.py``, once, for every generator) → cite (``cite.py``)."""

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

    def retrieve(self, standalone: str, rewritten: bool, k: int, doc_ids, timings: dict[str, float]
                 ) -> tuple[list[Hit], str]:
        """The k best paragraphs, and the restated question if it was searched too.

        A question few of whose words are in the best paragraph is likely worded in
        everyday language: the model restates it in the documents' own style and both
        wordings are searched, fused by the retriever. (A follow-up the model has just
        rewritten is not restated too: one model call before answering is enough.)"""
        t = time.perf_counter()
        hits = self.engine.search(standalone, k, doc_ids)
        timings["retrieve_s"] = time.perf_counter() - t
        if rewritten or not hits or word_share(standalone, hits[0].paragraph.text) >= RESTATE_BELOW:
            return hits, ""
        t = time.perf_counter()
        restated = self.generator.restate(standalone)
        timings["rewrite_s"] += time.perf_counter() - t
        if not restated:
            return hits, ""
        t = time.perf_counter()
        hits = search_many(self.engine, [standalone, restated], k, doc_ids)
        timings["retrieve_s"] += time.perf_counter() - t
        return hits, restated

    def ask(self, question: str, history: list[tuple[str, str]] | None = None, k: int | None = None,
            doc_ids=None, on_token: Callable[[str], None] | None = None,
            on_evidence: Callable[[list[Hit]], None] | None = None) -> Answer:
        """A checked, cited answer. ``on_token`` receives the draft as it is generated;
        ``on_evidence`` the retrieved paragraphs once it is decided to answer from them
        (before the first token), so sources can be shown while the model writes."""
        question = require_question(question)
        history = list(history or [])
        timings: dict[str, float] = {}
        replayed_before = getattr(self.generator, "replayed", 0)  # Config.llm_cache
        start = time.perf_counter()
        standalone = self.standalone(question, history)
        timings["rewrite_s"] = time.perf_counter() - start
        hits, restated = self.retrieve(standalone, standalone != question, k or self.engine.config.k,
                                       doc_ids, timings)
        searched = [f"also searched as restated in the documents' style: {restated}"] if restated else []

        streamed = False
        missing_note = ""  # what a question asking several things asks that the documents do not hold

        def finish(text: str, refused: bool, citations: list[Citation], flags: list[str]) -> Answer:
            timings.setdefault("first_token_s", time.perf_counter() - start)
            timings["total_s"] = time.perf_counter() - start
            if replayed := getattr(self.generator, "replayed", 0) - replayed_before:
                timings["llm_replayed"] = replayed  # these timings are not the model's
            if missing_note and not refused:
                text = f"{text}\n{missing_note}"
                flags = flags + [f"said what the documents do not hold: {missing_note}"]
            if on_token and not streamed:
                on_token(text)  # nothing was generated: the answer is its only token
            return Answer(question, standalone, text, refused, self.generator.name, citations, hits,
                          timings, searched + flags, self.notice)

        if evidence_strength(standalone, hits) < self.engine.config.refusal_threshold:
            return finish(REFUSAL.format(question=standalone), True, [],
                          ["retrieval evidence below the refusal threshold"])
        literal = word_share(standalone, hits[0].paragraph.text) >= RESTATE_BELOW
        decision = decide(standalone, hits, literal)
        if not decision.answer:
            text, citations = refusal(standalone, decision)
            return finish(text, True, citations, [f"decided not to answer: {decision.reason}"])
        missing = decision.missing
        if on_evidence:
            timings["evidence_s"] = time.perf_counter() - start  # sources can be shown from here
            on_evidence(hits)

        comparing = is_comparison(standalone)
        if self.generator.uses_llm:
            # The model picks what it cites; a comparison is shown every document's side.
            passages = select_evidence(hits, PROMPT_BUDGET, each_document=comparing)
        else:
            passages = extract(hits, comparing)
        raw = []
        for piece in self.generator.generate(standalone, passages):
            timings.setdefault("first_token_s", time.perf_counter() - start)
            streamed = True
            raw.append(piece)
            if on_token:
                on_token(piece)
        whole = "".join(raw)
        draft = trim_truncated(whole) if self.generator.uses_llm else whole
        checked = verify(self.generator.clauses(draft, passages), passages, standalone)
        flags = list(checked.flags)
        # A part decide did not find may still be stated by a verified sentence
        # (「2019年6月底前完成」 for 要在什么时候之前完成): it is not said to be missing.
        missing = [f for f in missing if not any(states_focus(f, v.text) for v in checked.kept)]
        if missing:
            missing_note = MISSING_PART.format(focus="、".join(f.describe() for f in missing))
        if draft != whole:
            flags.insert(0, "the answer reached the token limit; kept its whole clauses")
        # A question with no single focus (how, which measures) whose evidence retrieval
        # found is not refused for a wrong figure in the model's summary: the documents
        # are quoted instead, as for a comparison.
        describing = decision.focus is None and not checked.declined
        # Nothing the model said holds and decide found clear signs that the documents do
        # not hold what is asked (no sentence names it): quoting them would not answer it.
        unanswered = not checked.kept and decision.absent
        if (checked.refused or unanswered) and not comparing and not describing:
            if decision.answering is None:
                # The model declined, or every figure it gave is one no sentence states
                # for what was asked: the documents do not say it.
                text, citations = refusal(standalone, decision)
                return finish(text, True, citations, flags)
            # What the model said does not hold, but a retrieved sentence states what was
            # asked: that sentence is the answer.
            flags.append(f"replaced the model's answer by the sentence that states it: {decision.answering.sentence}")
            text, citations = quote_findings([decision.answering], standalone)
            return finish(text, False, citations, flags)
        if checked.refused or not checked.kept:
            # The model's wording could not be traced to the passages, but it invented no
            # figure; or, in a comparison whose places retrieval found, it mixed up their
            # figures or dates (a small model often gives one side's date for both). The
            # retrieved evidence is shown instead of a possibly wrong summary.
            flags.append("no generated sentence was supported; quoted the documents instead" if not checked.refused
                         else "the model's comparison did not hold; quoted each document instead" if comparing
                         else "the model's figures did not hold; quoted the documents instead")
            if decision.answering is not None and not comparing:
                text, citations = quote_findings([decision.answering], standalone)
                return finish(text, False, citations, flags)
            quotes = extract(hits, comparing)
            quoted = ExtractiveGenerator(UNVERIFIED_LABEL)
            text, citations = cite(verify(quoted.clauses("", quotes), quotes, standalone).verdicts, quotes)
            return finish(text, False, citations, flags)
        verdicts = checked.verdicts
        if self.generator.uses_llm:
            verdicts = verdicts + quote_verdicts(checked, passages, standalone)
        text, citations = cite(verdicts, passages)
        return finish(text, False, citations, flags)


def search_many(engine: Engine, queries: list[str], k: int, doc_ids) -> list[Hit]:
    """``Retriever.search_many`` through the engine (which builds or checks the index
    first). Kept here only until ``Engine`` offers it (owned by the engine's author)."""
    engine.search(queries[0], 1, doc_ids)  # ensures the index exists and is compatible
    return engine.retriever.search_many(queries, k, doc_ids)


def quote_verdicts(checked: Verification, passages: list[Passage], question: str) -> list[Verdict]:
    """The verbatim quotes under an LLM's summary, verified like any clause.

    The model's summary is short (decoding runs ~25 tokens/s on two cores); the facts
    behind it are quoted from the paragraphs it cited, so figures and names reach the
    reader verbatim: first the sentences it draws on, then one fact-bearing sentence of
    each enumerated item."""
    kept = checked.kept
    cited = {passages_by_n(passages)[n].hit.paragraph.id for v in kept for n in v.passages}
    quoted = [p for p in passages if p.hit.paragraph.id in cited]
    prompt_number = {p.hit.paragraph.id: p.n for p in quoted}
    drawn_on: dict[str, list[str]] = {}
    for v in kept:
        for n in v.passages:
            p = passages_by_n(passages)[n]
            drawn_on.setdefault(p.hit.paragraph.id, []).extend(
                s for s in supporting_sentences(v.text, p.hit.paragraph.text)
                if s not in drawn_on.get(p.hit.paragraph.id, []))
    quotes = select_quotes([p.hit for p in quoted], QUOTE_BUDGET, drawn_on)
    line = 1 + max((v.clause.line for v in checked.verdicts), default=0)
    clauses = [Clause(QUOTES_LABEL, (), line, "label")]
    clauses += [Clause(s, (prompt_number[q.hit.paragraph.id],), line + 1 + i, "quote")
                for i, q in enumerate(quotes) for s in q.sentences]
    return verify(clauses, passages, question).verdicts


def passages_by_n(passages: list[Passage]) -> dict[int, Passage]:
    return {p.n: p for p in passages}


def quote_findings(findings: list[Finding], question: str) -> tuple[str, list[Citation]]:
    """Retrieved sentences as the answer, each cited, under the label saying the model's
    own answer could not be verified."""
    passages = [Passage(i + 1, f.hit, [f.sentence]) for i, f in enumerate(findings)]
    clauses = [Clause(UNVERIFIED_LABEL, (), 0, "label")]
    clauses += [Clause(f.sentence, (p.n,), 1 + i, "quote") for i, (f, p) in enumerate(zip(findings, passages))]
    return cite(verify(clauses, passages, question).verdicts, passages)


def refusal(question: str, decision: Decision) -> tuple[str, list[Citation]]:
    """「文档中没有找到…」, naming, when one is near, what the documents say instead
    (「…；文档提到的是：累计签约138个高端优质项目、总投资3144亿元[1]」), cited."""
    nearby = decision.nearby
    if decision.focus is None:
        return REFUSAL.format(question=question), []
    focus = "、".join(f.describe() for f in decision.missing) if decision.missing else decision.focus.describe()
    if nearby is None:  # several things asked: name them; one: the question says it best
        return (MISSING_PART.format(focus=focus) if decision.missing else REFUSAL.format(question=question)), []
    text = REFUSAL_NEARBY.format(focus=focus, nearby=(nearby.clause or nearby.sentence).rstrip("。；;，,"))
    return text, [Citation(1, nearby.hit, [nearby.sentence])]


def extract(hits: list[Hit], each_document: bool = False) -> list[Passage]:
    """What the extractive generator, or an unverifiable LLM answer's fallback, quotes
    (for a comparison, each document's best sentence first)."""
    return select_evidence(hits, EXTRACT_BUDGET, min_ratio=EXTRACT_MIN_RATIO, each_document=each_document)
