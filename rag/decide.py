"""Deciding to answer, before any generation: the question's focus (what it asks for —
注册资本, 组长, 合同金额, 哪一天) must be found in the evidence, tied to what it asks
about; otherwise the answer is a refusal that says what the documents do contain nearby
(「文档中没有找到嬴州资源公司的注册资本；文档提到的是：……[1]」).

The same reading finds the sentence that answers the focus, which the answer quotes when
the model's own sentence fails verification.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from .chunking import split_sentences
from .claims import (CHANGE_WORDS, COUNTERS, MEASURE_UNITS, MEASURES, Quantity, implied_unit, leads_in_targets,
                     quantities, relative_years, stated_years, strip_words)
from .evidence import content_chars
from .retriever import Hit
from .profile import ZH_GOV
from .tokenize import issuer_place, mentions_place, names_place, place_names, tokenize

# What the corpus profile (rag/profile.py) knows of how figures and questions are
# written, under the names this module uses.
ASKS_FIGURE = ZH_GOV.asks_figure
ASKS_DATE = ZH_GOV.asks_date
ASKS_WHO = ZH_GOV.asks_who
QUESTION_GLUE = ZH_GOV.question_glue
NOT_SUBJECT = ZH_GOV.not_subject
MONEY_WORDS = ZH_GOV.money_words
ASKS_DESCRIPTION = ZH_GOV.asks_description
GENERIC_ASKED = ZH_GOV.generic_asked
ASKS_WHETHER = ZH_GOV.asks_whether

FOCUS_PASSAGES = 5  # the retrieved paragraphs the focus is looked for in (all of k=5)
ATTRIBUTE_WINDOW = 12  # characters on either side of a figure that say what it is of
TIED_SHARE = 2  # a figure is tied to the focus when its words hold half (rounded up) of the focus's bigrams
UNIT_NAMED_SHARE = 3  # …a third, when it is in the unit the question names (多少家 → 50家)
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
        phrase = self.phrase.rstrip("的呀呢啊吧")
        when = "的时间" if self.wants == "date" and not phrase.endswith(("时间", "日期", "时候")) else ""
        return (f"{self.year}年" if self.year and self.year not in phrase else "") + phrase + when


@dataclass(frozen=True)
class Foci:
    """Every focus a question asks for (one per asking part: 「…查处了多少起案件，罚没金额
    是多少？」 has two), and whether some part asks for a description, a list or a yes/no
    (``describing``: 「…怎么调整？由哪个部门牵头？」) or for several figures at once, or
    could not be read (``several``: 各多少, 分别多少)."""
    items: tuple[Focus, ...] = ()
    describing: bool = False
    several: bool = False

    @property
    def single(self) -> Focus | None:
        return self.items[0] if len(self.items) == 1 and not self.describing and not self.several else None


def focus_of(question: str) -> Focus | None:
    """The focus of a question asking for one thing (a figure, a date, a person or body);
    None for how/why/which-measures questions, whose answer is a description, and for
    one asking several things at once (各多少, 何时…哪个部门, …多少家？…是多少？).

    「嬴州资源公司的注册资本是多少？」 → asked 注册资本, subject 嬴州资源公司;
    「济南中欧班列2023年计划开行多少列？」 → asked 开行 (列), subject 济南中欧班列, 2023;
    「城子崖遗址博物馆每年接待多少游客？」 → asked 接待游客;
    「对莱芜区开展巡视的省委第七巡视组组长是谁？」 → asked 组长, subject 省委第七巡视组."""
    return foci_of(question).single


_PART_BREAK = re.compile(r"[，,；;？?！!。]")
_JOINS = ("以及", "、", "和", "及", "并", "与")  # what joins two asks in one part: 实施多少个项目、完成多少投资


def _asks(text: str) -> list[tuple[int, str]]:
    """Every question word asking for a figure, a date or who, by position: the longest
    at each position, none inside another (是多少 holds 多少; 什么时候 holds no 什么)."""
    found = sorted(((m.start(), w) for w in _ALL_ASKING for m in re.finditer(re.escape(w), text)),
                   key=lambda x: (x[0], -len(x[1])))
    asks, end = [], -1
    for i, w in found:
        if i >= end:
            asks.append((i, w))
            end = i + len(w)
    return asks


def _segments(part: str, asks: list[tuple[int, str]]) -> list[tuple[str, int, str]] | None:
    """One part cut between its asks at the last joining word before each next ask
    (「实施多少个重大项目、完成多少投资」 → two), each with its ask's position; None when
    two asks share one phrase (「何时由哪个部门发布」)."""
    cuts, out, begin = [], [], 0
    for (i, w), (j, _) in zip(asks, asks[1:]):
        between = part[i + len(w):j]
        at = max((between.rfind(x) for x in _JOINS), default=-1)
        if at < 0:
            return None
        cuts.append(i + len(w) + at)
    for (i, w), cut in zip(asks, cuts + [len(part)]):
        out.append((part[begin:cut], i - begin, w))
        begin = cut
        while begin < len(part) and part[begin] in "".join(_JOINS):
            begin += 1
    return out


def foci_of(question: str) -> Foci:
    """Each asking part of the question read as a ``Focus`` (``_read_focus``); a later part
    that names no subject asks about the earlier part's (「…罚没金额是多少」)."""
    text = question.strip().rstrip("？?。！! ")
    years = set(re.findall(r"((?:19|20)\d\d)年", text))
    year = years.pop() if len(years) == 1 else ""
    items: list[Focus] = []
    describing = several = False
    for part in _PART_BREAK.split(text):
        asks = _asks(part)
        rest = part
        for i, w in reversed(asks):
            rest = rest[:i] + "|" + rest[i + len(w):]
        listing = [(i, w) for i, w in asks if w == "几" and part[i - 1:i] in ("哪", "那", "这")]  # 哪几个: a list
        asks = [a for a in asks if a not in listing]
        # 从哪天到哪天 asks for one period
        asks = [a for k, a in enumerate(asks) if not (k and a[1] in ASKS_DATE and asks[k - 1][1] in ASKS_DATE
                                                      and part[asks[k - 1][0] + len(asks[k - 1][1]):a[0]] in ("到", "至"))]
        describing = describing or bool(listing) or any(w in rest for w in ASKS_DESCRIPTION)
        if not asks:
            continue
        segments = _segments(part, asks)
        if segments is None:
            several = True
            continue
        for segment, i, word in segments:
            if re.search(r"各|分别", segment[:i]):
                several = True  # 各多少: several figures, one per item
                continue
            focus = _read_focus(segment, i, word, year)
            if focus is None:
                several = True
            else:
                if not focus.subject and items:
                    focus = replace(focus, subject=items[-1].subject)
                items.append(focus)
    return Foci(tuple(items), describing, several)


_SKIP = set(QUESTION_GLUE) | set(NOT_SUBJECT)


def _read_focus(text: str, i: int, word: str, year: str) -> Focus | None:
    """One ask (``word`` at ``i`` of ``text``) as a Focus: the words before it up to the
    last 的 (else its last word) are what is asked, the rest what it is of; glue, modal and
    time words (了, 能, 现在, 每月) say nothing of it; a generic noun (目标, 标准) is the
    figure of what precedes it (「城镇新增就业的目标」 asks for 城镇新增就业)."""
    wants = "figure" if word in ASKS_FIGURE else "date" if word in ASKS_DATE else "who"
    before, after = text[:i], text[i + len(word):]
    unit = ""
    if wants == "figure" and (m := _COUNTER_AFTER.match(after)):
        unit = MEASURE_UNITS.get(m.group(1), (m.group(1),))[0]
        after = after[m.end():]
    own_years = re.findall(r"((?:19|20)\d\d)年", text)
    year = own_years[-1] if len(set(own_years)) == 1 else year
    head = strip_words(re.sub(r"(19|20)\d\d年(度)?", "", before).strip(), QUESTION_GLUE, from_end=True)
    tail = strip_words(after.strip(), QUESTION_GLUE + ("任", "担任", "负责"), from_end=False)
    subject_text, _, asked_text = head.rpartition("的")
    asked_words = [w for w in _words(asked_text) if w not in _SKIP]
    subject_words = [w for w in _words(subject_text) if w not in _SKIP]
    if not subject_text:  # no 的: the last word is what is asked, the rest what it is of
        subject_words, asked_words = asked_words[:-1], asked_words[-1:]
    while subject_words and (not asked_words or all(w in GENERIC_ASKED for w in asked_words)
                             or "".join(asked_words) in MONEY_WORDS):
        asked_words.insert(0, subject_words.pop())  # 城镇新增就业的目标, 罚没金额, 总投资
    asked, subject = "".join(asked_words), "".join(subject_words)
    if wants == "who" and content_chars(tail):
        subject, asked = subject + asked, tail  # 由谁任组长
    elif wants == "who" and len(asked) > 4 and len(words := _words(asked)) > 1:
        subject, asked = subject + "".join(words[:-1]), words[-1]  # 组长 of 省委第七巡视组组长
    elif wants != "who":
        asked = asked + "".join(w for w in _words(tail) if w not in _SKIP)
    phrase = (head + tail).strip("对在向由从和与及、，, ")
    for place in place_names(subject):
        subject = subject.replace(place, "")
    subject = strip_words(subject.strip("对在向由从和与及的、，, "), QUESTION_GLUE, from_end=True)
    if len(content_chars(asked)) < 2:
        return None
    return Focus(asked, subject, wants, unit, year, phrase)


def _words(text: str) -> list[str]:
    import jieba
    return [w for w in jieba.lcut(text) if content_chars(w)]


def _bigrams(text: str) -> set[str]:
    s = content_chars(re.sub(r"[\d.%％]+", "|", text))
    return {s[i:i + 2] for i in range(len(s) - 1) if "|" not in s[i:i + 2]}


def _asked_terms(asked: str) -> set[str]:
    """The asked-for thing as bigrams and, for a single-word focus (组长), the word. A
    generic noun closing it (目标, 标准) is left out: 「城镇新增就业的目标」 is stated as
    「城镇新增就业85万人」, under a lead-in naming 目标 once for many figures."""
    specific = strip_words(asked, GENERIC_ASKED, from_end=True)
    grams = _bigrams(specific if len(content_chars(specific)) >= 2 else asked)
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
    missing: tuple[Focus, ...] = ()  # what a question asking several things asks that the documents do not hold
    # a clear sign that the documents do not hold the focus (no sentence names it, or only
    # for another year or subject), even where the answer is left to the verifier
    absent: bool = False


def _figure_tied(q: Quantity, terms: set[str], unit_named: bool = False) -> bool:
    """The figure's own attribute (the words of its segment next to it) holds the focus."""
    window = q.before + "|" + q.after
    return len(terms & _bigrams(window)) >= _tied_needs(terms, unit_named)


def _tied_needs(terms: set[str], unit_named: bool = False) -> int:
    """Bigrams of the focus a figure's words must hold: half, rounded up (3 of
    政府补贴资金's 5, so 日韩资金 alone is not it; 2 of 消费总额's 3, so 消费券 is not). A
    figure in the very unit the question names (保存多少年 → 留存五年, 多少家 → 50家) is
    half tied by its unit already: a third of the words, rounded up, is enough."""
    return max(1, -(-len(terms) // (UNIT_NAMED_SHARE if unit_named else TIED_SHARE)))


def _lead_in_holds(sentence: str, q: Quantity, terms: set[str]) -> bool:
    """A lead-in ending in a colon governs the figures after it: 「主要预期目标是：地区
    生产总值增长6%左右」 states a 目标."""
    colon = max(sentence.rfind("：", 0, q.start), sentence.rfind(":", 0, q.start))
    lead = _bigrams(sentence[max(0, colon - ATTRIBUTE_WINDOW):colon])
    return colon >= 0 and len(terms & lead) >= _tied_needs(terms)


STATES, OTHER_YEAR, NOT_STATED = "states", "another year", "not stated"


def states_focus(focus: Focus, text: str, doc_date: str = "") -> bool:
    """Whether a text (a verified answer sentence) states what the focus asks for."""
    return _states_focus(focus, text, doc_date) == STATES


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
        unit = _expected_unit(focus)
        for q in quantities(prefix + dated):
            if q.unit == "date":
                continue
            if unit and q.unit not in (unit, "", "个") and unit != "个":
                continue
            if unit in MEASURES and q.unit not in (unit, ""):
                continue  # 个 counts things, not 元 or %: 「连跨3个千亿级台阶」 is no GDP
            if q.kind == "change" and not any(w in focus.asked for w in CHANGE_WORDS):
                continue  # a change (增长5.1%) is not the level asked for (消费总额)
            unit_named = bool(focus.unit) and focus.unit != "个" and q.unit == focus.unit
            if not (_figure_tied(q, terms, unit_named) or _lead_in_holds(prefix + dated, q, terms)):
                continue
            years = stated_years(q, doc_date, leads_in_targets(context))
            if focus.year and years and focus.year not in years:
                status = OTHER_YEAR
                continue
            return STATES
        return status
    # who or which body: the asked-for word as written (任组长, 设在…部门), all of it
    tokens = [w for w in tokenize(focus.asked) if len(w) > 1] or tokenize(focus.asked)
    found = focus.asked in sentence or bool(tokens) and all(w in sentence for w in tokens)
    return STATES if found else NOT_STATED


def _expected_unit(focus: Focus) -> str:
    """The unit the question names (多少列 → 列), else the one its asked-for word implies:
    an amount of money is in 元 (合同金额, 销售额), a ratio in % (贴息比例, 占比)."""
    return focus.unit or implied_unit(focus.asked)


def _mostly_in(words: str, text: str) -> bool:
    """At least half of the words (jieba tokens, no stop words) are in the text."""
    tokens = [w for w in tokenize(words) if len(w) > 1] or tokenize(words)
    return not tokens or sum(w in text for w in tokens) / len(tokens) >= 0.5


def _about_subject(focus: Focus, hit: Hit, places: list[str]) -> bool:
    """The place and the subject asked about (嬴州资源公司, 起步区) are what the paragraph
    speaks of: a place in it or the place its document was issued for."""
    # a paragraph speaks of what its document's title and its headings name (住房租金 of
    # the article 「第四章 住房租金」 whose paragraph says only 扣除标准为每月1500元)
    scope = hit.doc_title + "".join(hit.paragraph.section) + hit.paragraph.text
    issuer = issuer_place(hit.doc_title)
    if places and not any(names_place(hit.paragraph.text, p) or mentions_place(p, issuer) if issuer
                          else names_place(scope, p) for p in places):
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
    money = focus.wants == "figure" and _expected_unit(focus) == "元"
    seen: list[tuple[str, bool]] = []  # (status, about the subject) of sentences naming what was asked
    for hit in hits[:FOCUS_PASSAGES]:
        sentences = split_sentences(hit.paragraph.text)
        about_subject = _about_subject(focus, hit, places)  # of the paragraph, not of each sentence
        for i, sentence in enumerate(sentences):
            if not content_chars(sentence):
                continue
            status = _states_focus(focus, sentence, hit.doc_date, "".join(sentences[:i]))
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


def _examine(focus: Focus, hits: list[Hit], places: list[str]) -> tuple[Finding | None, Finding | None, str]:
    """(the sentence answering the focus, the closest one that does not, and, when no
    sentence answers it, the clear reason the documents do not hold it, or "")."""
    answering, nearby, seen = find_focus(focus, hits, places)
    if answering:
        return answering, nearby, ""
    if not seen:
        reason = f"no retrieved sentence names {focus.asked}"
    elif all(status == OTHER_YEAR for status, _ in seen if status != NOT_STATED) \
            and any(status == OTHER_YEAR for status, _ in seen):
        reason = f"{focus.asked} is stated only for another year than {focus.year}"
    elif not any(about for _, about in seen):
        reason = f"{focus.asked} is named only in paragraphs about something else than {focus.subject or 'the place asked about'}"
    else:
        reason = ""  # named, but no figure is read as tied to it: the verifier decides
    return None, nearby, reason


def whether_unnamed(question: str, hits: list[Hit]) -> str:
    """What a yes/no question asks whether (「高速公路是否免费通行」 → 免费通行), when no
    retrieved sentence names at least half of its words; else "". Documents that never
    name it cannot say yes or no to it."""
    text = question.strip().rstrip("？?。！! ")
    at = min((i for w in ASKS_WHETHER if (i := text.find(w)) >= 0), default=-1)
    if at < 0:
        return ""
    asked = _PART_BREAK.split(text[at:])[0]
    asked = next((asked[len(w):] for w in ASKS_WHETHER if asked.startswith(w)), asked)
    words = [w for w in tokenize(asked) if len(w) > 1 and w not in _SKIP]
    if not words:
        return ""
    for hit in hits[:FOCUS_PASSAGES]:
        for sentence in split_sentences(hit.paragraph.text):
            if sum(w in sentence for w in words) * 2 >= len(words):
                return ""
    return asked


def decide(question: str, hits: list[Hit], literal: bool = True) -> Decision:
    """Whether to generate an answer: always for a question without a focus (how, which
    measures) and whenever a sentence of the retrieved paragraphs states the focus for
    what is asked about. Otherwise it refuses only on clear signs that the documents do
    not hold it, each a reason a person would give:

    - what is asked for is named in no retrieved sentence (注册资本, 合同金额);
    - it is stated, but only for another year (2022's train count for 2023);
    - it is named only in paragraphs about something else (the city's GDP, asked about
      the start-up area; 组长 of another group).

    A question asking for several things is refused only when none of them is there
    (and no part asks for a description); when some are, it is answered and the ones
    that are not are named (``Decision.missing``). Where these rules do not hold (the
    attribute is named but no figure is tied to it in a way they read: tables, lists
    after a colon, wording of its own), the model answers and the verifier decides. A
    question in everyday words (not ``literal``: few of its words in the best paragraph)
    may ask in other words for what a sentence states (雾霾 for PM2.5), so it is never
    refused here; if the model's answer fails verification, it is refused with what was
    found nearby."""
    foci = foci_of(question)
    if hits and (unnamed := whether_unnamed(question, hits)):
        return Decision(False, None, reason=f"no retrieved sentence names {unnamed}, which the question asks whether",
                        absent=True)
    if not foci.items or not hits:
        return Decision(bool(hits), None)
    places = place_names(question)
    examined = [(f, *_examine(f, hits, places)) for f in foci.items]
    if foci.single is not None:
        focus, answering, nearby, reason = examined[0]
        if answering:
            return Decision(True, focus, answering, nearby)
        if not reason:
            return Decision(True, focus, None, nearby, "the focus is named but no figure is read as tied to it")
        return Decision(not literal, focus, None, nearby, reason, absent=True)
    missing = [(f, nearby, reason) for f, _, nearby, reason in examined if reason]
    if len(missing) == len(examined) and not foci.describing and not foci.several and literal:
        nearby = next((n for _, n, _ in missing if n is not None), None)
        return Decision(False, missing[0][0], None, nearby, "; ".join(r for _, _, r in missing),
                        missing=tuple(f for f, _, _ in missing))
    return Decision(True, None, None, None, missing=tuple(f for f, _, _ in missing if literal))
