"""The one verifier: every clause of every answer, whatever generated it (extractive,
local, gguf, openai), is checked here, once, against the passages it may cite.

A clause is *supported* when its passage backs its wording and one sentence of that
passage states each of its figures: the same value (2.7万 = 27000), a compatible unit
(a percentage change is not a level, 平方米 is not 元), for the same attribute (the words
the clause ties to the figure are the words the sentence ties to it) and the same time
(year, quarter). Anything else is *unsupported*: removed, and the reason recorded.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import combinations

from .chunking import split_sentences
from .profile import ZH_GOV
from .prompts import REFUSAL_MARKERS
from .claims import (COUNTERS, GENERIC_COUNTER, LINKING, MEASURES, PERIODS, Clause, Quantity,
                     implied_unit, leads_in_targets, quantities, relative_years, stated_years, strip_words)
from .evidence import Passage, content_chars, overlap, shared_bigrams
from .retriever import title_subjects
from .tokenize import bare_place_names, issuer_place, names_place, place_names, place_stem

SUPPORT_MIN = 0.5  # share of a clause's character bigrams its passage must hold
SUPPORT_WITH_FIGURE = 0.3  # the same for a clause whose figures a sentence of the passage states
SALVAGE_MIN_CHARS = 6  # a clause kept from an unsupported sentence says at least this much
PART_MIN = 0.2  # share of its bigrams a part of a supported sentence needs from its passages, or it is removed
HIGHLIGHT_MIN_SHARED = 8  # bigrams a long paragraph sentence must share with a summary
_CLAUSE = re.compile(r"[，,；;]")
# A numbered part of a document (图3, 附件2, 第二十三条): a clause saying what it is must cite
# a passage naming it, even when the number comes from the question (「图3是汽车前号牌」
# citing the caption 「图5　汽车前号牌」)
_IDENTIFIER = re.compile(r"(?:图|附图|表|附表|附件)\s*\d+|第[一二三四五六七八九十百零\d]+[条款章节]")
_FRAMING = re.compile(r"^(根据|依据|按照)(以上|上述)?(资料|材料|文件)(中的信息|内容|显示|所述)?[，,：:]?")
_WHOLE_YEAR = ("全年", "年底", "年末", "年初", "")
_COUNTED_OR_MEASURED = MEASURES | set(COUNTERS)
_LINKING_PAIRS = frozenset(w for w in LINKING if len(w) == 2)
ASKS_FIGURE = ZH_GOV.asks_figure
QUESTION_GLUE = ZH_GOV.question_glue

# Why a figure is not stated by a sentence, from the least to the most alike: each check
# is made only on sentences that passed the ones before it.
VALUE, UNIT, KIND, ATTRIBUTE, TIME = ("value", "unit", "a change read as a level", "attribute", "time")
_ORDER = (VALUE, UNIT, KIND, ATTRIBUTE, TIME)


def _closer(reason: str, other: str) -> str:
    """Of two reasons a figure is not stated, the one closer to a match."""
    return max(reason, other, key=_ORDER.index)


@dataclass
class Verdict:
    """The verifier's decision on one clause."""
    clause: Clause
    text: str  # the clause as it will be shown (framing words and citation marks removed)
    supported: bool
    passages: list[int] = field(default_factory=list)  # prompt numbers of the passages backing it
    reason: str = ""  # why it is not supported


# -- figures ---------------------------------------------------------------------------

def _bigrams(text: str) -> set[str]:
    s = content_chars(text)
    return {s[i:i + 2] for i in range(len(s) - 1)}


@lru_cache(maxsize=4096)
def _place_names(text: str) -> tuple[str, ...]:
    """``place_names``, cached: jieba's tagger is slow, and one answer asks about the same
    clauses and sentences many times."""
    return tuple(place_names(text))


@lru_cache(maxsize=4096)
def attribute_words(q: Quantity) -> frozenset[str]:
    """What a text ties to a figure, as character bigrams, without the places and years
    around it (「莱芜区2020年举办培训21次」 ties 举办培训 to 21)."""
    words = re.sub(r"[\d.%％]+", "|", q.before + "|" + q.after)
    for place in _place_names(words):
        words = words.replace(place, "|")
    words = re.sub(r"(19|20)\d\d年?|[一二三四上下前后]{1,2}季度|[上下]半年|全年|全区|全市|全省|全国", "|", words)
    # a linking word (累计, 超过) says nothing of which figure it is: 「累计运送了超2.6万标箱」
    # is not 「累计开行超2.6万列」
    return frozenset(b for part in words.split("|") for b in _bigrams(part) if b not in _LINKING_PAIRS)


def _units_compatible(claim: Quantity, source: Quantity) -> bool:
    if claim.unit == source.unit or not claim.unit:
        return True
    if claim.unit in MEASURES or source.unit in MEASURES:
        return False  # 元 is not 平方米, % is not 个百分点
    return GENERIC_COUNTER in (claim.unit, source.unit) or not source.unit  # 个 counts anything


def _same_value(claim: Quantity, source: Quantity) -> bool:
    if claim.unit == "date" or source.unit == "date":
        a, b = str(claim.value), str(source.value)
        return claim.unit == source.unit and (a == b or a.endswith("-" + b) or b.endswith("-" + a))
    return abs(float(claim.value) - float(source.value)) <= 1e-9 * max(1.0, abs(float(claim.value)))


def _period(period: str) -> str:
    return "" if period in _WHOLE_YEAR else period.removeprefix("第")


def figure_mismatch(claim: Quantity, sentence: str, context: str = "", year: str = "", period: str = "",
                    doc_date: str = "", under_target: bool = False) -> str:
    """"" when ``sentence`` states the claim's figure; else why not (VALUE, UNIT, KIND,
    ATTRIBUTE, TIME). ``context`` is the paragraph text before the sentence (a year
    stated there holds for it); ``year``/``period`` are the claim's time when the claim
    itself names none (the question's). ``under_target``: the paragraph's lead-in before
    the sentence names targets (主要预期目标是：). A target stated without a year is for the
    year its document looks ahead to, never the year before: a 2026 report's 「地区生产总值
    增长5%左右」 is no result of 2025."""
    offset = len(context)
    found = [q for q in quantities(context + sentence) if q.start >= offset]
    claimed_year = claim.year or year
    claimed_period = _period(claim.period or period)
    reason = VALUE
    for source in found:
        if not _same_value(claim, source):
            continue
        if not _units_compatible(claim, source):
            reason = _closer(reason, UNIT)
            continue
        if (claim.kind == "change") != (source.kind == "change"):
            reason = _closer(reason, KIND)
            continue
        words = attribute_words(claim)
        if words and not words & (_bigrams(source.before) | _bigrams(source.after)):
            reason = _closer(reason, ATTRIBUTE)
            continue
        source_years = stated_years(source, doc_date, under_target)
        if claimed_year and source_years and claimed_year not in source_years \
                or claimed_period != _period(source.period):
            reason = _closer(reason, TIME)
            continue
        return ""
    return reason


def figures_stated(text: str, sentences: list[str], usable: list[bool] | None = None, doc_date: str = "",
                   question: str = "") -> str:
    """"" when, for every figure of ``text``, one of the ``usable`` sentences of a paragraph
    (all of them by default; in paragraph order) states it; else which figure is not
    stated, and why. Every sentence before a usable one still gives it its year. A figure
    the question itself gives (a number it names) is not a claim, and the question's year
    and quarter stand for a clause that names none."""
    asked = {(q.value, q.unit) for q in quantities(question)}
    for claim in quantities(text, doc_date):
        if (claim.value, claim.unit) not in asked:
            why = claim_mismatch(claim, sentences, usable, doc_date, question) or own_unit_mismatch(claim, question)
            if why:
                return f"{claim.text}: {why}"
    return ""


def own_unit_mismatch(claim: Quantity, question: str = "") -> str:
    """UNIT when a claim's figure is not of the kind its own words say, even if a source
    states that figure: 「消费总额是340万人次」 (a money attribute, a count of visitors). A bare
    figure (「300万元」) answers the question, so the question's words are its attribute
    (a 贴息比例 is a %). Only for the model's own wording (``question`` given)."""
    if not question or not claim.unit or claim.unit == "date":
        return ""
    own = strip_words(claim.before, LINKING, from_end=True)
    bare = not content_chars(claim.before + claim.after)
    asked = strip_words(question.strip().rstrip("？?。！! "), ASKS_FIGURE + QUESTION_GLUE, from_end=True)
    expected = implied_unit(asked) if bare else implied_unit(own)
    if expected and claim.unit != expected and claim.unit in _COUNTED_OR_MEASURED:
        return UNIT
    return ""


def claim_mismatch(claim: Quantity, sentences: list[str], usable: list[bool] | None = None, doc_date: str = "",
                   question: str = "") -> str:
    """"" when one usable sentence states the figure; else the reason closest to a match."""
    year, period = _question_time(question)
    dated_sentences = [relative_years(s, doc_date) for s in sentences]
    reason = VALUE
    for i, sentence in enumerate(dated_sentences):
        if usable is not None and not usable[i]:
            continue
        why = figure_mismatch(claim, sentence, _year_context("".join(dated_sentences[:i])), year, period, doc_date,
                              leads_in_targets("".join(dated_sentences[:i])))
        if not why:
            return ""
        reason = _closer(reason, why)
    return reason


def _year_context(context: str) -> str:
    """The paragraph before a sentence, kept only for the year it last names (so the
    figures of earlier sentences are not read again)."""
    years = re.findall(r"(?:19|20)\d\d年", context)
    return years[-1] + "，" if years else ""


def _question_time(question: str) -> tuple[str, str]:
    years = set(re.findall(r"((?:19|20)\d\d)年", question))
    year = years.pop() if len(years) == 1 else ""
    period = next((p for p in PERIODS if p in question), "")
    return year, period


def has_figures(text: str, question: str = "") -> bool:
    asked = {(q.value, q.unit) for q in quantities(question)}
    return any((q.value, q.unit) not in asked for q in quantities(text))


# -- wording ---------------------------------------------------------------------------

def wording_support(text: str, paragraph: str, scope: str = "", question: str = "", title: str = "") -> float:
    """The share of the clause's character bigrams found in the paragraph, leaving out
    those it repeats from the question (a restated question is not a claim); 0 when it
    names a place that is neither in the paragraph nor its document's own (``scope``) nor
    one its ``title`` is about (``title_subjects``: 「国务院办公厅关于四川省…的复函」 is about
    四川省; the issuer before 关于 is not what it is about)."""
    about = "".join(title_subjects(title))
    places = set(_place_names(text)) | {p for p in bare_place_names(question) if p in text}
    if any(not names_place(paragraph, place) and not names_place(about, place)
           and place not in (scope, place_stem(scope)) for place in places):
        return 0.0
    claimed = _bigrams(text) - _bigrams(question)
    if not claimed:
        return overlap(text, paragraph)
    p = content_chars(paragraph)
    return sum(b in p for b in claimed) / len(claimed)


def usable_sentences(passage: Passage, quote: bool = False) -> tuple[list[str], list[bool]]:
    """The paragraph's sentences, and which of them may state a figure: those the model
    was shown (``passage.sentences``), or all of them for a verbatim quote."""
    sentences = split_sentences(passage.hit.paragraph.text)
    if quote or not passage.sentences:
        return sentences, [True] * len(sentences)
    shown = passage.text
    return sentences, [s in shown or any(x in s for x in passage.sentences) for s in sentences]


def support(text: str, passage: Passage, question: str = "", quote: bool = False) -> tuple[float, str]:
    """How much of a clause the passage backs (0..1), and, at 0, why.

    Figures are checked against the sentences the model was shown, or, for a verbatim
    quote, against the whole paragraph: a figure the model states that no sentence it saw
    states for that attribute and time is not from the documents, even if the paragraph
    holds the digits elsewhere (「减税退税降费超过1000亿元」 is no GDP)."""
    hit = passage.hit
    if quote and any(text in s for s in split_sentences(hit.paragraph.text)):
        return 1.0, ""  # a sentence of the paragraph, quoted as it stands, states what it says
    sentences, usable = usable_sentences(passage, quote)
    # A verbatim quote states its figures for the times its paragraph gives, shown with its
    # source; the question's year is imposed only on what the model says in its own words.
    why = figures_stated(text, sentences, usable, hit.doc_date, "" if quote else question)
    if why:
        return 0.0, why
    named = hit.paragraph.text + "".join(hit.paragraph.section)
    if missing := [m.group() for m in _IDENTIFIER.finditer(text) if re.sub(r"\s", "", m.group()) not in
                   re.sub(r"\s", "", named)]:
        return 0.0, f"names {missing[0]}, which the passage does not"
    score = wording_support(text, relative_years(hit.paragraph.text, hit.doc_date),
                            issuer_place(hit.doc_title), question, hit.doc_title)
    return score, ("" if score else "a place the passage does not speak for")


# -- clauses ---------------------------------------------------------------------------

def supporting_passages(text: str, cited: list[int], by_n: dict[int, Passage], question: str,
                        flags: list[str], quote: bool = False) -> tuple[list[int], str]:
    """The passages that back a clause: the cited ones that do, else the best one, else
    (a sentence comparing two documents) one passage per clause or two together; and,
    when none does, the reason for the best passage's refusal."""
    def scores(part: str) -> dict[int, tuple[float, str]]:
        return {n: support(part, p, question, quote) for n, p in by_n.items()}

    whole = scores(text)
    needed = SUPPORT_WITH_FIGURE if has_figures(text, question) else SUPPORT_MIN
    valid = sorted({n for n in cited if n in whole and whole[n][0] >= needed})
    for n in sorted(set(cited) - set(valid)):
        reason = "no such passage" if n not in by_n else "the passage does not support it"
        flags.append(f"removed [{n}] ({reason}): {text}")
    if valid or not whole:
        return valid, ""
    best = max(whole, key=lambda n: whole[n][0])
    if whole[best][0] >= needed:
        flags.append(f"attached [{best}]: {text}")
        return [best], ""

    clauses = [c for c in _CLAUSE.split(text) if len(content_chars(c)) >= 4]
    if len(clauses) > 1:
        backing = set()
        for clause in clauses:
            by_clause = scores(clause)
            n = max(by_clause, key=lambda n: by_clause[n][0])
            if by_clause[n][0] < SUPPORT_MIN:
                break
            backing.add(n)
        else:
            flags.append(f"attached {sorted(backing)} clause by clause: {text}")
            return sorted(backing), ""
    # One clause stating two documents' figures (「分别已办结31件和45件」) is backed by two
    # passages together, if each states a figure the other does not.
    stated = quantities(text)
    for a, b in combinations(sorted(by_n), 2):
        own = [{i for i, q in enumerate(stated)
                if not claim_mismatch(q, *usable_sentences(by_n[n], quote), by_n[n].hit.doc_date, question)}
               for n in (a, b)]
        if own[0] - own[1] and own[1] - own[0] and own[0] | own[1] == set(range(len(stated))):
            joint = "\n".join(by_n[n].hit.paragraph.text for n in (a, b))
            if wording_support(text, joint, "", question) >= needed:
                flags.append(f"attached [{a}, {b}] together: {text}")
                return [a, b], ""
    return [], whole[best][1]


def supporting_sentences(answer_sentence: str, paragraph: str) -> list[str]:
    """The paragraph's sentences an answer sentence draws on (at least its best one): the
    mostly-quoted ones, and long ones a summarising sentence takes a phrase from."""
    scored = [(overlap(s, answer_sentence), shared_bigrams(s, answer_sentence), s)
              for s in split_sentences(paragraph)]
    if not scored:
        return []
    drawn = [s for share, shared, s in scored if share >= SUPPORT_MIN or shared >= HIGHLIGHT_MIN_SHARED]
    return drawn or [max(scored, key=lambda x: (x[0], x[1]))[2]]


def _scoped(part: str, places: list[str]) -> str:
    """A part of a sentence read with the place its sentence names first, when it names
    none itself: a clause speaks for the place its sentence names."""
    return part if not places or place_names(part) else places[0] + part


def _without_unbacked_parts(body: str, passages: list[Passage], question: str, flags: list[str]) -> str:
    """A supported sentence without the parts its passages do not back at all. A figure
    can carry a sentence whose other part is invented: 「国务院办公厅牵头，2019年6月底前
    完成」, where the paragraph says 生态环境部牵头 and only the date holds."""
    parts = [p for p in _CLAUSE.split(body.rstrip("。！？!?")) if content_chars(p)]
    if len(parts) < 2:
        return body
    places = place_names(body)
    asked = _bigrams(question)
    unbacked = []
    for part in parts:
        if len(content_chars(part)) < SALVAGE_MIN_CHARS or has_figures(part, question) \
                or len(_bigrams(part) - asked) < 2:
            continue  # a figure is checked on its own; the question restated is framing, not a claim
        if max(support(_scoped(part, places), p, question)[0] for p in passages) < PART_MIN:
            unbacked.append(part)
    if not unbacked or len(unbacked) == len(parts):
        return body
    flags.append(f"removed a part no passage backs ({'; '.join(unbacked)}): {body}")
    return "，".join(p for p in parts if p not in unbacked) + "。"


# -- the verifier ------------------------------------------------------------------------

@dataclass
class Verification:
    """Every clause's verdict, in answer order, and what the check changed."""
    verdicts: list[Verdict]
    flags: list[str]
    declined: bool  # the model said, first, that the documents do not answer
    refused: bool  # nothing held and what failed was a figure, or the model declined

    @property
    def kept(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.supported]


def verify(clauses: list[Clause], passages: list[Passage], question: str) -> Verification:
    """Decide, once, for every clause: supported (with its passages) or not (removed, and
    the reason flagged). A sentence joining a right fact and a wrong one (the other
    document's figure, an invented date) keeps its supported clauses, each cited on its
    own; a clause speaks for the place its sentence names."""
    flags: list[str] = []
    by_n = {p.n: p for p in passages}
    verdicts: list[Verdict] = []
    declined = False
    failed_figures = False
    for clause in clauses:
        if clause.kind == "label":
            verdicts.append(Verdict(clause, clause.text, True))
            continue
        body = _FRAMING.sub("", clause.text.strip())
        if not content_chars(body):
            continue
        if clause.kind == "model" and any(m in body for m in REFUSAL_MARKERS):
            declined = declined or not any(v.supported and v.clause.kind != "label" for v in verdicts)
            flags.append(f"model said the documents do not answer: {body}")
            continue
        quote = clause.kind == "quote"
        valid, why = supporting_passages(body, list(clause.cites), by_n, question, flags, quote)
        if valid:
            if not quote:
                body = _without_unbacked_parts(body, [by_n[n] for n in valid], question, flags)
            verdicts.append(Verdict(clause, body, True, valid))
            continue
        parts = [c.strip() for c in _CLAUSE.split(body.rstrip("。！？!?"))]
        places = place_names(body)
        said = content_chars("".join(v.text for v in verdicts if v.supported))
        backed = []
        for part in parts:
            if len(content_chars(part)) < SALVAGE_MIN_CHARS or content_chars(part) in said:
                continue
            v, _ = supporting_passages(_scoped(part, places), [], by_n, question, [], quote)
            if v:
                backed.append((part, v))
        if len(parts) > 1 and backed:
            flags.append(f"kept {len(backed)} of {len(parts)} clauses, removed the rest: {body}")
            verdicts.extend(Verdict(clause, part + "。", True, v) for part, v in backed)
            continue
        if has_figures(body, question):
            failed_figures = True
            flags.append(f"removed a sentence stating a figure no passage states ({why or 'value'}): {body}")
        else:
            flags.append(f"removed an unsupported sentence: {body}")
        verdicts.append(Verdict(clause, body, False, [], why or "wording"))
    kept = [v for v in verdicts if v.supported and v.clause.kind != "label"]
    return Verification(verdicts, flags, declined, not kept and (declined or failed_figures))
