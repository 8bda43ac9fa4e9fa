"""Deciding to answer, before any generation: the question's focus (what it asks for —
注册资本, 组长, 合同金额, 哪一天) must be found in the evidence, tied to what it asks
about; otherwise the answer is a refusal that says what the documents do contain nearby
(「文档中没有找到嬴州资源公司的注册资本；文档提到的是：……[1]」).

The same reading finds the sentence that answers the focus, which the answer quotes when
the model's own sentence fails verification.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .chunking import split_sentences
from .claims import COUNTERS, MEASURE_UNITS, Quantity, document_years, quantities, relative_years, strip_words
from .evidence import content_chars
from .retriever import Hit
from .profile import ZH_GOV
from .tokenize import issuer_place, mentions_place, place_names, tokenize

# What the corpus profile (rag/profile.py) knows of how figures and questions are
# written, under the names this module uses.
ASKS_FIGURE = ZH_GOV.asks_figure
ASKS_DATE = ZH_GOV.asks_date
ASKS_WHO = ZH_GOV.asks_who
QUESTION_GLUE = ZH_GOV.question_glue
NOT_SUBJECT = ZH_GOV.not_subject
MONEY_WORDS = ZH_GOV.money_words

FOCUS_PASSAGES = 5  # the retrieved paragraphs the focus is looked for in (all of k=5)
ATTRIBUTE_WINDOW = 12  # characters on either side of a figure that say what it is of
TIED_SHARE = 3  # a figure is tied to the focus when its words hold a third of the focus's bigrams
SUBJECT_MIN_SHARE = 0.5  # share of the subject's words the answering paragraph must hold

_ALL_ASKING = sorted(ASKS_FIGURE + ASKS_DATE + ASKS_WHO, key=len, reverse=True)
_COUNTER_AFTER = re.compile("^(" + "|".join(sorted([*COUNTERS, *MEASURE_UNITS], key=len, reverse=True)) + ")")


@dataclass(frozen=True)
class Focus:
    """What a question asks for: ``asked`` (注册资本), of what (``subject``:
    嬴州资源公司), the kind of answer (``wants``: figure, date, who, or "" for how/what
    questions, which have no single focus), the unit it names (多少列 → 列) and its year."""
    asked: str
    subject: str = ""
    wants: str = ""
    unit: str = ""
    year: str = ""
    phrase: str = ""  # the question's own words for it, without the question word

    def describe(self) -> str:
        """「嬴州资源公司的注册资本」, 「2023年济南中欧班列计划开行」, for the refusal."""
        return (f"{self.year}年" if self.year and self.year not in self.phrase else "") + self.phrase


def focus_of(question: str) -> Focus | None:
    """The focus of a question asking for one thing (a figure, a date, a person or body);
    None for how/why/which-measures questions, whose answer is a description, and for
    one asking several things at once (各多少, 何时…哪个部门, …多少家？…是多少？).

    「嬴州资源公司的注册资本是多少？」 → asked 注册资本, subject 嬴州资源公司;
    「济南中欧班列2023年计划开行多少列？」 → asked 开行 (列), subject 济南中欧班列计划, 2023;
    「城子崖遗址博物馆每年接待多少游客？」 → asked 接待游客;
    「对莱芜区开展巡视的省委第七巡视组组长是谁？」 → asked 组长, subject 省委第七巡视组."""
    text = question.strip().rstrip("？?。！! ")
    asks = [(text.find(w), w) for w in _ALL_ASKING if w in text]
    # one ask per position: 是多少 contains 多少, 是谁 contains 谁
    starts = sorted({i for i, _ in asks})
    positions = [i for i in starts if not any(j < i < j + len(w) for j, w in asks if j != i)]
    if len(positions) != 1:
        return None
    i = positions[0]
    word = max((w for j, w in asks if j == i), key=len)
    if word == "几" and text[i - 1:i] in ("哪", "那", "这") or re.search(r"(各|分别)$", text[:i]):
        return None  # 哪几个 asks for a list; 各多少 for several figures
    wants = "figure" if word in ASKS_FIGURE else "date" if word in ASKS_DATE else "who"
    before, after = text[:i], text[i + len(word):]
    before = re.split(r"[，,；;？?]", before)[-1]
    after = re.split(r"[，,；;？?]", after)[0]
    unit = ""
    if wants == "figure" and (m := _COUNTER_AFTER.match(after)):
        unit = MEASURE_UNITS.get(m.group(1), (m.group(1),))[0]
        after = after[m.end():]
    years = re.findall(r"((?:19|20)\d\d)年", text)
    head = strip_words(re.sub(r"(19|20)\d\d年(度)?", "", before).strip(), QUESTION_GLUE, from_end=True)
    tail = strip_words(after.strip(), QUESTION_GLUE + ("任", "担任", "负责"), from_end=False)
    # What the question word is attached to: after the last 的, or the last word (组长 of
    # 第七巡视组组长); for who, what follows it (由谁任组长) if anything does.
    if "的" in head:
        subject, asked = head.rsplit("的", 1)
    else:
        words = _words(head)
        asked = words[-1] if words else ""
        subject = head[: len(head) - len(asked)]
    if wants == "who" and content_chars(tail):
        subject, asked = head, tail
    elif wants == "who" and len(asked) > 4 and len(words := _words(asked)) > 1:
        subject, asked = subject + "".join(words[:-1]), words[-1]  # 组长 of 省委第七巡视组组长
    else:
        asked = asked + tail
    asked = strip_words(asked, ("的", "了"), from_end=True)
    phrase = (head + tail).strip("对在向由从和与及、，, ")
    for place in place_names(subject):
        subject = subject.replace(place, "")
    subject = strip_words(subject.strip("对在向由从和与及的、，, "), QUESTION_GLUE, from_end=True)
    if len(content_chars(asked)) < 2:
        return None
    return Focus(asked, subject, wants, unit, years[-1] if len(set(years)) == 1 else "", phrase)


def _words(text: str) -> list[str]:
    import jieba
    return [w for w in jieba.lcut(text) if content_chars(w)]


def _bigrams(text: str) -> set[str]:
    s = content_chars(re.sub(r"[\d.%％]+", "|", text))
    return {s[i:i + 2] for i in range(len(s) - 1) if "|" not in s[i:i + 2]}


def _asked_terms(asked: str) -> set[str]:
    """The asked-for thing as bigrams and, for a single-word focus (组长), the word."""
    grams = _bigrams(asked)
    return grams or ({asked} if asked else set())


@dataclass
class Finding:
    """A sentence of a retrieved paragraph and how it relates to the focus."""
    hit: Hit
    sentence: str
    answers: bool  # it states what is asked, for the subject asked about
    clause: str = ""  # the part of it closest to what is asked, to name in a refusal


@dataclass
class Decision:
    answer: bool
    focus: Focus | None
    answering: Finding | None = None  # the sentence that answers the focus, if one does
    nearby: Finding | None = None  # else the closest sentence: what the documents do say
    reason: str = ""
    flags: list[str] = field(default_factory=list)


def _figure_tied(q: Quantity, terms: set[str]) -> bool:
    """The figure's own attribute (the words of its segment next to it) holds the focus."""
    window = q.before + "|" + q.after
    return len(terms & _bigrams(window)) >= max(1, len(terms) // TIED_SHARE)


def _lead_in_holds(sentence: str, q: Quantity, terms: set[str]) -> bool:
    """A lead-in ending in a colon governs the figures after it: 「主要预期目标是：地区
    生产总值增长6%左右」 states a 目标."""
    colon = max(sentence.rfind("：", 0, q.start), sentence.rfind(":", 0, q.start))
    lead = _bigrams(sentence[max(0, colon - ATTRIBUTE_WINDOW):colon])
    return colon >= 0 and len(terms & lead) >= max(1, len(terms) // TIED_SHARE)


STATES, OTHER_YEAR, NOT_STATED = "states", "another year", "not stated"


def _states_focus(focus: Focus, sentence: str, doc_date: str, context: str = "") -> str:
    """Whether the sentence states what the focus asks for (STATES): a figure (of the
    unit asked for, for the year asked about) next to the asked-for words; a date next to
    them; for who, the asked-for words themselves (任组长). OTHER_YEAR: it states such a
    figure, but for another year than the one asked about."""
    terms = _asked_terms(focus.asked)
    dated = relative_years(sentence, doc_date)
    if focus.wants == "date":  # a date governs its sentence: 「2022年10月26日,市委常委会…审议通过…」
        found = any(q.unit == "date" for q in quantities(dated)) and _mostly_in(focus.asked, sentence)
        return STATES if found else NOT_STATED
    if focus.wants == "figure":
        year = re.findall(r"(?:19|20)\d\d年", relative_years(context, doc_date))
        prefix = year[-1] + "，" if year else ""
        status = NOT_STATED
        for q in quantities(prefix + dated):
            if q.unit == "date":
                continue
            if focus.unit and q.unit not in (focus.unit, "", "个") and focus.unit != "个":
                continue
            if not (_figure_tied(q, terms) or _lead_in_holds(prefix + dated, q, terms)):
                continue
            if focus.year and q.year != focus.year and (q.year or focus.year not in document_years(doc_date)
                                                         and document_years(doc_date)):
                status = OTHER_YEAR
                continue
            return STATES
        return status
    # who or which body: the asked-for word as written (任组长, 设在…部门), all of it
    tokens = [w for w in tokenize(focus.asked) if len(w) > 1] or tokenize(focus.asked)
    found = focus.asked in sentence or bool(tokens) and all(w in sentence for w in tokens)
    return STATES if found else NOT_STATED


def _mostly_in(words: str, text: str) -> bool:
    """At least half of the words (jieba tokens, no stop words) are in the text."""
    tokens = [w for w in tokenize(words) if len(w) > 1] or tokenize(words)
    return not tokens or sum(w in text for w in tokens) / len(tokens) >= 0.5


def _about_subject(focus: Focus, hit: Hit, places: list[str]) -> bool:
    """The place and the subject asked about (嬴州资源公司, 起步区) are what the paragraph
    speaks of: a place in it or the place its document was issued for."""
    scope = hit.doc_title + hit.paragraph.text
    issuer = issuer_place(hit.doc_title)
    if places and not any(p in hit.paragraph.text or mentions_place(p, issuer) if issuer else p in scope
                          for p in places):
        return False
    if not focus.subject:
        return True
    words = [w for w in tokenize(focus.subject) if len(w) > 1 and w not in NOT_SUBJECT]
    return not words or sum(w in scope for w in words) / len(words) >= SUBJECT_MIN_SHARE


def find_focus(focus: Focus, hits: list[Hit], places: list[str] = ()
               ) -> tuple[Finding | None, Finding | None, list[tuple[str, bool]]]:
    """(the best sentence answering the focus, the closest sentence that does not, and for
    every sentence naming most of what was asked, whether it states it and whether its
    paragraph is about the subject) among the retrieved paragraphs, in ranking order. Closest: most of the asked-for words, then
    of the subject's, and, for a figure, one of the kind asked for (元 for a 金额)."""
    answering = nearby = None
    best_near = 0.0
    asked, about = _asked_terms(focus.asked), _bigrams(focus.subject)
    money = focus.wants == "figure" and (focus.unit == "元" or focus.asked.endswith(MONEY_WORDS))
    seen: list[tuple[str, bool]] = []  # (status, about the subject) of sentences naming what was asked
    for hit in hits[:FOCUS_PASSAGES]:
        sentences = split_sentences(hit.paragraph.text)
        for i, sentence in enumerate(sentences):
            if not content_chars(sentence):
                continue
            status = _states_focus(focus, sentence, hit.doc_date, "".join(sentences[:i]))
            about_subject = _about_subject(focus, hit, places)
            if answering is None and status == STATES and about_subject:
                answering = Finding(hit, sentence, True)
            if _holds_half(asked, sentence):
                seen.append((status, about_subject))
            before = "".join(sentences[:i])
            for part in re.split(r"(?<=[，,；;])", sentence):
                grams = _bigrams(part)
                shared = 2 * len(asked & grams) + len(about & grams)
                same_kind = False  # a figure of the kind asked for (元 for a 合同金额)
                if focus.wants == "figure":
                    found = quantities(part)
                    same_kind = money and any(q.unit == "元" for q in found)
                    shared += bool(found) * 0.5 + same_kind
                # it names some of what was asked, or a figure of that kind for the subject
                if (asked & grams or same_kind and about & grams) and shared > best_near:
                    best_near, nearby = shared, Finding(hit, sentence, False, _with_year(
                        part.rstrip("，,；;。"), relative_years(before + sentence[:sentence.find(part)], hit.doc_date)))
    return answering, nearby, seen


def _holds_half(terms: set[str], sentence: str) -> bool:
    grams = _bigrams(sentence)
    return bool(terms) and len(terms & grams) * 2 >= len(terms)


def _with_year(clause: str, context: str) -> str:
    """A clause named on its own keeps the year its figures are stated for:
    「实施工业技改项目108个」 after 「2020年,」 is named as 「2020年，实施工业技改项目108个」."""
    if not quantities(clause) or re.search(r"(19|20)\d\d年|今年|去年|前年", clause):
        return clause
    years = re.findall(r"((?:19|20)\d\d)年", context)
    return f"{years[-1]}年，{clause}" if years else clause


def decide(question: str, hits: list[Hit], literal: bool = True) -> Decision:
    """Whether to generate an answer: always for a question without a single focus (how,
    which measures) and whenever a sentence of the retrieved paragraphs states the focus
    for what is asked about. Otherwise it refuses only on clear signs that the documents
    do not hold it, each a reason a person would give:

    - what is asked for is named in no retrieved sentence (注册资本, 合同金额);
    - it is stated, but only for another year (2022's train count for 2023);
    - it is named only in paragraphs about something else (the city's GDP, asked about
      the start-up area; 组长 of another group).

    Where these do not hold (the attribute is named but no figure is tied to it in a way
    these rules read: tables, lists after a colon, wording of its own), the model answers
    and the verifier decides. A question in everyday words (not ``literal``: few of its
    words in the best paragraph) may ask in other words for what a sentence states (雾霾
    for PM2.5), so it is never refused here; if the model's answer fails verification, it
    is refused with what was found nearby."""
    focus = focus_of(question)
    if focus is None or not hits:
        return Decision(bool(hits), focus)
    answering, nearby, seen = find_focus(focus, hits, place_names(question))
    if answering:
        return Decision(True, focus, answering, nearby)
    if not seen:
        reason = f"no retrieved sentence names {focus.asked}"
    elif all(status == OTHER_YEAR for status, _ in seen if status != NOT_STATED) \
            and any(status == OTHER_YEAR for status, _ in seen):
        reason = f"{focus.asked} is stated only for another year than {focus.year}"
    elif not any(about for _, about in seen):
        reason = f"{focus.asked} is named only in paragraphs about something else than {focus.subject or 'the place asked about'}"
    else:
        return Decision(True, focus, None, nearby, "the focus is named but no figure is read as tied to it")
    return Decision(not literal, focus, None, nearby, reason)
