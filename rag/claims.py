"""Claims as typed objects: what a generator says (clauses, each with the passages it draws
on) and the figures a sentence states, read with their value, unit, kind, attribute and time.

A figure is more than its digits. 「建筑面积达2.7万平方米」 states 27000 of 平方米 for
建筑面积; 「PM2.5平均浓度同比改善7.5%」 states a *change* of 7.5 %, not a level;
「2022年,…开行801列、同比增长4.84%」 states both for 2022. The verifier (``verify.py``)
compares claims with source sentences on these fields, never on the digits alone.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .profile import ZH_GOV

# What the corpus profile (rag/profile.py) knows of how figures and questions are
# written, under the names this module uses.
MEASURE_UNITS = ZH_GOV.measure_units
COUNTERS = ZH_GOV.counters
GENERIC_COUNTER = ZH_GOV.generic_counter
LINKING = ZH_GOV.linking
CHANGE_WORDS = ZH_GOV.change_words
ARRIVAL = ZH_GOV.arrival
PERIODS = ZH_GOV.periods
MONEY_WORDS = ZH_GOV.money_words
RATIO_WORDS = ZH_GOV.ratio_words
TARGET_WORDS = ZH_GOV.target_words
MEASURES = frozenset(unit for unit, _ in MEASURE_UNITS.values())  # units of measure (元, %, 平方米), not counters

ATTRIBUTE_BEFORE = 8  # characters before a figure that say what it is the figure of
ATTRIBUTE_AFTER = 6  # …and after it (设置7处联合检查点: the counted thing follows)

_DIGITS = "0123456789"
_CN_DIGIT = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CN_UNIT = {"十": 10, "百": 100, "千": 1000}
_CN_NUMERAL = "零〇一二三四五六七八九两十百千"
_MAGNITUDE = {"万亿": 1e12, "亿": 1e8, "千万": 1e7, "百万": 1e6, "万": 1e4}
_UNITS_RE = "|".join(re.escape(u) for u in sorted([*MEASURE_UNITS, *COUNTERS], key=len, reverse=True))
_NUMBER = re.compile(
    rf"(?P<num>\d+(?:\.\d+)?|[{_CN_NUMERAL}]+)(?P<mag>万亿|千万|百万|亿|万)?(?P<more>多|余)?(?P<unit>{_UNITS_RE})?")
_PERCENT_WORDS = re.compile(r"百分之([零〇一二三四五六七八九十百点\d.]+)")
_DATE = re.compile(r"(?:(?P<y>(?:19|20)\d\d)年)?(?P<m>1[0-2]|0?[1-9])月(?:(?P<d>3[01]|[12]\d|0?[1-9])日)?")
_YEAR = re.compile(r"((?:19|20)\d\d)年")
_ITEM_NUMBER = re.compile(r"^\s*[(（]?\d{1,3}[)）.、．](?!\d)", re.MULTILINE)  # 16.针对… (12)推动…
_CITE = re.compile(r"\[\d+\]")
SEGMENT_BREAK = "，,、；;。：:！？!?（）()\n"
_RELATIVE_YEAR = re.compile(r"(前年|去年|今年)")
_YEARS_BACK = {"前年": 2, "去年": 1, "今年": 0}


@dataclass(frozen=True)
class Clause:
    """What a generator says: one sentence and the passages (numbers in the prompt) it says
    it draws on. The verifier decides whether they back it.

    ``kind``: "model" (the model's own wording), "quote" (a sentence copied verbatim
    from its passage: the extractive generator, the quotes under a summary) or "label"
    (a fixed line of ours, such as 原文要点：, shown as it is)."""
    text: str
    cites: tuple[int, ...] = ()
    line: int = 0  # the answer line it is on: the summary, each quoted passage…
    kind: str = "model"


_CITE_MARK = re.compile(r"\[(\d+)\]")


def parse_clauses(text: str, labels: tuple[str, ...] = (), quotes_after: tuple[str, ...] = ()) -> list[Clause]:
    """An LLM's text as clauses: one per sentence, with the [n] marks it carries (a mark
    closing a run of sentences is read as the last sentence's). Lines equal to one of
    ``labels`` are labels; the lines after one of ``quotes_after`` (原文要点：) are
    verbatim quotes."""
    from .chunking import split_sentences
    clauses = []
    kind = "model"
    for line_no, line in enumerate(text.strip().split("\n")):
        if line.strip() in labels or line.strip() in quotes_after:
            clauses.append(Clause(line.strip(), (), line_no, "label"))
            kind = "quote" if line.strip() in quotes_after else kind
            continue
        for sentence in split_sentences(line):
            cites = tuple(int(n) for n in _CITE_MARK.findall(sentence))
            body = _CITE_MARK.sub("", sentence).strip()
            if body:
                clauses.append(Clause(body, cites, line_no, kind))
    return clauses


@dataclass(frozen=True)
class Quantity:
    """One figure of a text, read as a person would read it."""
    value: float | str  # normalised: 2.7万 → 27000.0; a date → "2020-09-16"
    unit: str  # canonical (元, 平方米, %, 个百分点, 列…), "" when none is written, "date"
    kind: str  # "level", "change" (同比增长4.84%) or "date"
    start: int
    end: int
    text: str
    before: str  # the words just before it, in its segment (总投资, 建筑面积达)
    after: str  # the words just after it (联合检查点)
    year: str = ""  # the year it is stated for ("" when the text gives none before it)
    period: str = ""  # 一季度, 上半年…: part of that year
    target: bool = False  # its sentence calls it a target (目标, 力争): what is to be reached, not what was


def chinese_number(text: str) -> float | None:
    """二十三 → 23, 两 → 2, 一百零五 → 105, 三千 → 3000; None for what is no number (十十)."""
    if not text or any(c not in _CN_NUMERAL for c in text):
        return None
    if all(c in _CN_DIGIT for c in text):  # 二〇二二 is written digit by digit
        return float(int("".join(str(_CN_DIGIT[c]) for c in text)))
    total, digit = 0, None
    for c in text:
        if c in _CN_DIGIT:
            digit = _CN_DIGIT[c]
        else:
            unit = _CN_UNIT[c]
            total += (1 if digit is None else digit) * unit
            digit = None
    return float(total + (digit or 0))


def document_years(doc_date: str) -> set[str]:
    """The years a figure stated without one speaks of: its document's year, and the one
    before (a report of February 2021 or a work report of 2026 looks back on the past
    year). Empty when the document is undated."""
    year = (doc_date or "")[:4]
    return {year, str(int(year) - 1)} if year.isdigit() else set()


def stated_years(q: "Quantity", doc_date: str, under_target: bool = False) -> set[str]:
    """The years a figure speaks of: its own, else its document's time (``document_years``);
    a target (``Quantity.target``, or under a lead-in naming targets) stated without a year
    is for the year its document looks ahead to, never the year before."""
    if q.year:
        return {q.year}
    if (q.target or under_target) and doc_date[:4].isdigit():
        return {doc_date[:4]}
    return document_years(doc_date)


def relative_years(text: str, doc_date: str) -> str:
    """今年/去年/前年 written as years counted from the document's date ("去年共举办各类
    培训21次" in a report of February 2021 speaks of 2020)."""
    year = (doc_date or "")[:4]
    if not year.isdigit():
        return text
    return _RELATIVE_YEAR.sub(lambda m: f"{int(year) - _YEARS_BACK[m.group(1)]}年", text)


def _segment_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    left = max(text.rfind(c, 0, start) for c in SEGMENT_BREAK) + 1
    rights = [i for i in (text.find(c, end) for c in SEGMENT_BREAK) if i >= 0]
    return left, min(rights, default=len(text))


def implied_unit(attribute: str) -> str:
    """The unit a figure's attribute implies, if it names one kind of quantity: an amount
    of money is in 元 (合同金额, 消费总额), a ratio in % (贴息比例, 占比); else ""."""
    attribute = attribute.rstrip("的是为达到约共计 ")
    if attribute.endswith(MONEY_WORDS):
        return "元"
    return "%" if attribute.endswith(RATIO_WORDS) else ""


def strip_words(words: str, glue, from_end: bool) -> str:
    """``words`` without the ``glue`` words at its end (or start), as often as they occur."""
    changed = True
    while changed and words:
        changed = False
        for w in sorted(glue, key=len, reverse=True):
            if from_end and words.endswith(w):
                words, changed = words[:-len(w)], True
            elif not from_end and words.startswith(w):
                words, changed = words[len(w):], True
    return words


def _kind(before: str, unit: str) -> str:
    tail = before[-6:]
    for word in CHANGE_WORDS:
        i = tail.rfind(word)
        if i >= 0:
            rest = tail[i + len(word):]
            if not any(rest.startswith(a) or rest.startswith("了" + a) for a in ARRIVAL):
                return "change"
    return "level" if unit != "date" else "date"


def quantities(text: str, doc_date: str = "") -> list[Quantity]:
    """The figures a text states, with what each is a figure of, and when.

    Years (2022年) are times, not figures; a date (2020年9月16日, 1月29日) is a figure of
    kind "date". A lone 一 (一是…, 统一, 一批) is an article, not a count, and item
    numbers opening a line (16.针对…) number a list. 第…条/第十五个五年 are ordinals.
    """
    text = relative_years(_CITE.sub(lambda m: " " * len(m.group()), text), doc_date)
    text = _ITEM_NUMBER.sub(lambda m: " " * len(m.group()), text)
    text = _PERCENT_WORDS.sub(lambda m: _percent_digits(m), text)
    found: list[Quantity] = []
    taken: list[tuple[int, int]] = []
    for m in _DATE.finditer(text):
        if m.group("d") is None and m.group("y") is None:
            continue  # a bare 9月 is a time of year, read with the year below
        y = m.group("y") or ""
        value = "-".join(x for x in (y, f"{int(m.group('m')):02d}", f"{int(m.group('d')):02d}" if m.group("d") else "") if x)
        found.append(_make(text, m.start(), m.end(), value, "date", "date"))
        taken.append((m.start(), m.end()))
    for m in _NUMBER.finditer(text):
        if any(a <= m.start() < b for a, b in taken):
            continue
        if text[m.end():m.end() + 1] == "级" and not m.group("unit"):
            continue  # a class, not an amount: 千亿级产业链, 三级医院, 连跨3个千亿级台阶
        num, unit_word = m.group("num"), m.group("unit") or ""
        if num[0] in _DIGITS:

            if text[m.end():m.end() + 1] in ("月", "日") and not unit_word and m.group("mag") is None:
                continue  # part of a date, read above
            if unit_word == "年" and (re.fullmatch(r"(19|20)\d\d", num) or text[m.end():m.end() + 1] in ("月", "度")):
                continue  # a year (2022年, 2022年度), not a duration (3年, 五年)
            if m.start() > 0 and text[m.start() - 1] in "." or _glued_to_latin(text, m.start(), m.end()):
                continue  # part of a name: PM2.5, G20, 5G
            value = float(num)
        else:
            if not (unit_word or m.group("mag")) or num == "一" and not m.group("mag"):
                continue  # Chinese numerals count only with a unit; a lone 一 is an article
            if m.start() > 0 and text[m.start() - 1] in "第初":
                continue  # an ordinal: 第二十三条, 第十五个五年
            number = chinese_number(num)
            if number is None or unit_word == "年" and number >= 1000:
                continue  # 二〇二二年 is a year
            value = number
        value *= _MAGNITUDE.get(m.group("mag") or "", 1.0)
        unit = ""
        if unit_word in MEASURE_UNITS:
            unit, factor = MEASURE_UNITS[unit_word]
            value *= factor
        elif unit_word:
            unit = unit_word.removeprefix("余")
        found.append(_make(text, m.start(), m.end(), round(value, 6), unit, ""))
    return sorted(found, key=lambda q: q.start)


def _glued_to_latin(text: str, start: int, end: int) -> bool:
    def latin(i: int) -> bool:
        return 0 <= i < len(text) and text[i].isascii() and text[i].isalpha()
    number_end = start + len(re.match(r"[\d.]+", text[start:]).group())
    return latin(start - 1) or latin(number_end)


def _percent_digits(m: re.Match) -> str:
    words = m.group(1)
    whole, _, frac = words.partition("点")
    w = whole if whole.isdigit() else chinese_number(whole)
    if w is None:
        return m.group()
    digits = str(int(float(w)))
    if frac:
        digits += "." + "".join(str(_CN_DIGIT.get(c, c)) for c in frac)
    return digits + "%"


LABEL_CHARS = 20  # a table cell's column header read as its figure's attribute, at most


def _make(text: str, start: int, end: int, value, unit: str, kind: str) -> Quantity:
    left, right = _segment_bounds(text, start, end)
    before = strip_words(text[left:start].strip(), LINKING, from_end=True)
    if not before and left > 0 and text[left - 1] in "：:":
        # a labelled value, as table rows are read (「分年度招生任务·1998年：50」): the label
        # says what the figure is of
        label_start = max(text.rfind(c, 0, left - 1) for c in "；;。\n") + 1
        before = text[max(label_start, left - 1 - LABEL_CHARS):left - 1].strip()
    after = strip_words(text[end:right].strip(), LINKING, from_end=False)
    year, period = time_of(text, start)
    sentence_start = max(text.rfind(c, 0, start) for c in "。！？!?；;\n") + 1
    return Quantity(value, unit, kind or _kind(text[left:start], unit), start, end, text[start:end],
                    before[-ATTRIBUTE_BEFORE:], after[:ATTRIBUTE_AFTER], year, period,
                    names_target(text[sentence_start:start]))


def names_target(text: str) -> bool:
    """Whether words before a figure call it a target (主要预期目标是：, 力争): a target
    (城镇新增就业17万人左右) is not the result the same report gives (17.78万人)."""
    return any(w in text for w in TARGET_WORDS)


def leads_in_targets(before: str) -> bool:
    """The paragraph before a sentence leads in a list of targets: 「今年…主要预期目标是：
    地区生产总值增长5.5%左右；」 governs 「城镇新增就业85万人」 after it."""
    colon = max(before.rfind("："), before.rfind(":"))
    return colon >= 0 and names_target(before[:colon])


def time_of(text: str, position: int) -> tuple[str, str]:
    """The year a figure at ``position`` is stated for (the closest one before it in the
    text, or the first one after it in the same sentence: 「开行801列，是2022年的两倍」 is
    rare; 「801列(2022年)」 rarer still, so only before), and the part of that year."""
    years = [m.group(1) for m in _YEAR.finditer(text, 0, position)]
    sentence_start = max(text.rfind(c, 0, position) for c in "。！？!?\n") + 1
    head = text[sentence_start:position]
    period = next((p for p in PERIODS if p in head), "")
    return (years[-1] if years else ""), period
