"""Documents → citable paragraphs.

A reader per format (``rag.readers``) turns a file into ``Block``s: lines, table rows,
metadata fields. ``structure`` then does what every format shares, by the rules of the
corpus profile (``rag.profile``): page chrome is dropped; header lines and label/value
fields become metadata (title, issuing body and its place, document number, dates,
source); the signature becomes metadata; headings (一、 （一） 1. （1） 第一章 第一条 附件,
or a short unnumbered line between paragraphs) become the section path; table rows and
the remaining lines become numbered paragraphs with their character offsets in the
extracted text.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from .profile import CN_DIGITS, ZH_GOV, Profile
from .tokenize import place_names
from .readers import READERS, SUPPORTED_SUFFIXES, Block, DocumentError, decode_text

__all__ = ["Block", "Document", "DocumentError", "Paragraph", "READERS", "SUPPORTED_SUFFIXES",
           "decode_text", "file_hash", "find_files", "heading_rank", "load_document", "structure"]


@dataclass(frozen=True)
class Paragraph:
    doc_id: str
    number: int  # 1-based, among the document's paragraphs
    text: str
    section: tuple[str, ...]  # heading path, outermost first
    start: int  # character offsets in the document's extracted text
    end: int

    @property
    def id(self) -> str:
        return f"{self.doc_id}#{self.number}"

    @property
    def section_path(self) -> str:
        return " > ".join(self.section)

    def to_dict(self) -> dict:
        return {"doc_id": self.doc_id, "number": self.number, "text": self.text,
                "section": list(self.section), "start": self.start, "end": self.end}

    @classmethod
    def from_dict(cls, d: dict) -> "Paragraph":
        return cls(d["doc_id"], d["number"], d["text"], tuple(d["section"]), d["start"], d["end"])


@dataclass
class Document:
    doc_id: str
    path: str
    title: str
    content_hash: str
    paragraphs: list[Paragraph]
    date: str = ""
    source: str = ""
    issuer: str = ""  # the issuing body: 国务院办公厅, 海南省人民政府, 中共济南市莱芜区委
    place: str = ""  # the most specific place the issuer speaks for ("" for a national body)
    doc_number: str = ""  # 发文字号
    metadata: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # what the reader could not read fully

    def meta_dict(self) -> dict:
        return {"doc_id": self.doc_id, "path": self.path, "title": self.title,
                "content_hash": self.content_hash, "date": self.date, "source": self.source,
                "issuer": self.issuer, "place": self.place, "doc_number": self.doc_number,
                "metadata": self.metadata, "paragraphs": len(self.paragraphs)}


# ---------------------------------------------------------------------------------------
# Line classification

_DATE_RE = re.compile(r"(\d{4})\s*[年\-/.]\s*(\d{1,2})\s*[月\-/.]\s*(\d{1,2})\s*日?")
_CN_DATE_RE = re.compile(rf"([{CN_DIGITS}]{{4}})年([{CN_DIGITS}]{{1,3}})月([{CN_DIGITS}]{{1,3}})日")
_TIME = r"(\s*(星期|周)[一二三四五六日天])?(\s*\d{1,2}\s*[:时]\s*\d{2}\s*分?(\s*[:：]\s*\d{2}\s*秒?)?)?"
_BARE_DATE_RE = re.compile(rf"^({_DATE_RE.pattern}|{_CN_DATE_RE.pattern}){_TIME}$")
_SEPARATOR = re.compile(r"^[>›»/|]+$")  # a breadcrumb split one token a line
_INNER_GAP = re.compile(r"[ \t\u3000\xa0]{3,}")  # a run of spaces between two items on one line
_ENDS = tuple("。！？；：:!?;…）)”」』》】") + ("——",)  # how a whole paragraph ends
_LABEL_ONLY = re.compile(r"^(?P<label>[^:：。，,；;！？]{1,20})[:：]$")


def _squash(text: str) -> str:
    return re.sub(r"[\s\u3000\xa0]+", "", text)


def heading_rank(line: str, profile: Profile = ZH_GOV) -> int | None:
    for rank, (_, pattern) in enumerate(profile.heading_patterns):
        if pattern.match(line):
            return rank
    return None


def _cn_number(text: str) -> int:
    digits = {c: i for i, c in enumerate("〇一二三四五六七八九")} | {"零": 0, "两": 2}
    if all(c in digits for c in text):  # 一九九六 is written digit by digit
        return int("".join(str(digits[c]) for c in text))
    total, current = 0, 0
    for c in text:
        if c == "十":
            total += (current or 1) * 10
            current = 0
        elif c == "百":
            total += (current or 1) * 100
            current = 0
        else:
            current = digits.get(c, 0)
    return total + current


def iso_date(text: str) -> str:
    """The first date in ``text`` as YYYY-MM-DD (Arabic or Chinese numerals), or ""."""
    if m := _DATE_RE.search(text):
        y, mo, d = (int(g) for g in m.groups())
    elif m := _CN_DATE_RE.search(text):
        y, mo, d = (_cn_number(g) for g in m.groups())
    else:
        return ""
    if not (1 <= mo <= 12 and 1 <= d <= 31):
        return ""
    return f"{y:04d}-{mo:02d}-{d:02d}"


def _split_inline_heading(line: str) -> tuple[str, bool]:
    """Return (heading text, has body after it).

    ``(一)全面提升巡视整改思想自觉。市委高度重视…`` carries its heading inline: the heading
    is the text up to the first sentence end or colon outside quotation marks.
    ``第五条　纳税人的子女…`` carries only its number: the article number is the heading.
    """
    if m := re.match(rf"^(第[{CN_DIGITS}\d]+条)[\s\u3000]+(?=\S)", line):
        return m.group(1), True
    depth = 0
    for i, ch in enumerate(line):
        if ch in "“「《(（":
            depth += 1
        elif ch in "”」》)）":
            depth = max(0, depth - 1)
        elif depth == 0 and ch in "。：:！？；":
            rest = line[i + 1:].strip()
            return line[:i], bool(rest)
    return line, False


@dataclass
class _Line:
    text: str
    start: int
    end: int
    heading_level: int | None = None
    kind: str = "text"
    label: str = ""


def _lines(blocks: list[Block], profile: Profile) -> list[_Line]:
    """Blocks as lines: a line holding two items a run of spaces apart (a signature and its
    date; two figure captions) is split; a short 「label：」 line is joined to the next line
    (「来源：」/「四川日报」, 「［5］ESI：」/its definition, 「各位代表：」/the speech)."""
    lines: list[_Line] = []
    for b in blocks:
        if b.kind != "text":
            lines.append(_Line(b.text, b.start, b.start + len(b.text), b.heading_level, b.kind, b.label))
            continue
        pos = 0
        for piece in _INNER_GAP.split(b.text):
            at = b.text.find(piece, pos)
            pos = at + len(piece)
            piece = piece.strip()
            if piece:
                lines.append(_Line(piece, b.start + at, b.start + pos, b.heading_level))
    merged: list[_Line] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else None
        if (line.kind == "text" and nxt is not None and nxt.kind == "text" and _LABEL_ONLY.match(line.text)
                and heading_rank(line.text, profile) is None and not profile.chrome_line.match(line.text)
                and not profile.part_heading.match(line.text) and not _LABEL_ONLY.match(nxt.text)
                and not profile.chrome_line.match(nxt.text)):
            merged.append(_Line(line.text + nxt.text, line.start, nxt.end, line.heading_level))
            i += 2
            continue
        merged.append(line)
        i += 1
    return merged


def _meta_fields(line: str, profile: Profile) -> list[tuple[str, str]] | None:
    """(key, value) pairs of a 「label：value」 line whose first label the profile knows;
    one line may hold several (「来源:…网站发布时间:2021-02-08」)."""
    m = re.match(r"^[【\[]?([^:：]{1,12})[:：]", line)
    if not m or profile.meta_labels.get(_squash(m.group(1))) is None:
        return None
    spaced = "|".join(r"\s*".join(map(re.escape, label))
                      for label in sorted(profile.meta_labels, key=len, reverse=True))
    found = list(re.finditer(rf"({spaced})\s*[:：]", line))
    fields = []
    for j, f in enumerate(found):
        end = found[j + 1].start() if j + 1 < len(found) else len(line)
        fields.append((profile.meta_labels[_squash(f.group(1))], line[f.end():end].strip()))
    return fields


def _is_breadcrumb(line: str, profile: Profile) -> bool:
    """首页>工作之窗>巡视巡察: short parts between arrows, no sentence."""
    parts = re.split(r"\s*[>›»]\s*", line)
    return len(parts) >= 2 and all(0 < len(x) <= 15 for x in parts) \
        and not any(c in line for c in profile.sentence_punct)


def _is_short_label(line: str, profile: Profile) -> bool:
    """A short line that reads as a label or heading, not a sentence."""
    return len(line) <= profile.short_line_chars and not any(p in line for p in profile.sentence_punct) \
        and not line.endswith(("：", ":"))


# ---------------------------------------------------------------------------------------
# Structure

def structure(doc_id: str, path: str, text: str, blocks: list[Block], content_hash: str,
              profile: Profile = ZH_GOV) -> Document:
    meta: dict[str, str] = {}
    title_parts: list[str] = []
    header_lines: list[str] = []
    paragraphs: list[Paragraph] = []
    stack: list[tuple[int, str]] = []  # (rank, heading text)
    body_started = False
    last_was_heading = False  # consecutive short heading lines form one heading
    last_row = False
    lines = _lines(blocks, profile)
    warnings = sorted({b.warning for b in blocks if b.warning})

    # A numbered heading line with nothing under it before the next heading of its rank
    # or above (（一）小型车辆涂装样图。 followed by an image) says something itself: it
    # becomes a paragraph, so nothing the document states is lost.
    bare: list = []  # [rank, line, section] of the last heading-only line, until body follows

    def add_paragraph(line: _Line, text_: str | None = None, section=None) -> None:
        nonlocal body_started, last_was_heading
        body_started, last_was_heading = True, False
        bare.clear()
        paragraphs.append(Paragraph(doc_id, len(paragraphs) + 1, text_ or line.text,
                                    section or tuple(h for _, h in stack), line.start, line.end))

    def flush_bare(rank: int | None = None) -> None:
        if bare and (rank is None or rank <= bare[0]):
            _, line, section = bare
            add_paragraph(line, section=section)

    def push_heading(rank: int, heading: str) -> None:
        nonlocal body_started, last_was_heading
        flush_bare(rank)
        if rank == -1 and stack and _squash(heading) in _squash(stack[-1][1]):
            body_started, last_was_heading = True, True  # 附件：X then X: said already
            return
        if last_was_heading and stack and stack[-1][0] == rank == -2:
            if len(_squash(heading)) > len(_squash(stack[-1][1])):  # 附件 then 附件：…样图
                stack[-1] = (rank, heading)
        elif last_was_heading and stack and rank == -1 and (
                stack[-1][0] == -1 or profile.part_heading.fullmatch(stack[-1][1])):
            # A heading split over two lines (关于…（校） / 扩大规模…的请示), or a bare 附件
            # followed by the annex's title.
            head = stack[-1][1]
            sep = " " if profile.part_heading.fullmatch(head) or head.endswith(("：", ":")) else ""
            stack[-1] = (stack[-1][0], head + sep + heading)
        else:
            while stack and stack[-1][0] >= rank:
                stack.pop()
            stack.append((rank, heading))
        body_started, last_was_heading = True, True

    for i, line in enumerate(lines):
        s = line.text
        prev = lines[i - 1].text if i else ""
        nxt = lines[i + 1].text if i + 1 < len(lines) else ""
        if line.kind == "meta":
            key = profile.meta_labels.get(_squash(line.label), _squash(line.label))
            if s:
                meta.setdefault(key, _squash(s) if key != "标题" else s)
            continue
        if line.kind == "row":
            add_paragraph(line)
            last_row = True
            continue
        if meta.get("_trailer"):
            continue
        if (paragraphs and not last_was_heading and not last_row and line.heading_level is None
                and not paragraphs[-1].text.endswith(_ENDS) and heading_rank(s, profile) is None
                and not profile.part_heading.match(s) and not profile.trailer_start.match(s)
                and not _BARE_DATE_RE.match(s) and not profile.figure_caption.match(s)):
            # A paragraph that stops mid-sentence goes on in this line (a word broken out
            # where markup was: 「“双向」/「揭榜」/「挂帅”的简称…」).
            last = paragraphs.pop()
            paragraphs.append(Paragraph(doc_id, last.number, last.text + s, last.section, last.start,
                                        line.end))
            continue
        last_row = False
        # Page chrome and furniture
        if (profile.chrome_line.match(s) or profile.page_number.match(s) or profile.photo_caption.search(s)
                or _SEPARATOR.match(prev) or _SEPARATOR.match(nxt) or _is_breadcrumb(s, profile)):
            continue
        if body_started and paragraphs and profile.trailer_start.match(s):
            meta["_trailer"] = "1"
            continue
        if line.heading_level == 0 or (line.heading_level == 1 and not title_parts and not body_started):
            title_parts = title_parts or [s]  # <title>, docx Title, or a leading # heading
            continue
        if (fields := _meta_fields(s, profile)) is not None:
            for key, value in fields:
                if value:
                    meta.setdefault(key, value)
            continue
        if _BARE_DATE_RE.match(s):
            if body_started:
                meta.setdefault("落款日期", s)
            else:
                meta.setdefault("页面日期", s)
            continue
        if m := profile.delivered_line.match(s):
            meta.setdefault("报告日期", s[:m.end()])
            meta.setdefault("副标题", s)
            rest = _squash(s[m.end():]).lstrip("）)")
            if profile.speaker_line.match(rest):
                meta.setdefault("报告人", rest)
            continue
        if profile.document_number.match(_squash(s)):
            meta.setdefault("发文字号", _squash(s))
            continue
        if not body_started and profile.speaker_line.match(_squash(s)):
            meta.setdefault("报告人", s)
            continue
        # A short line followed by a date is a signature (the issuer, then the date).
        if body_started and _is_short_label(s, profile) and _BARE_DATE_RE.match(nxt) \
                and heading_rank(s, profile) is None:
            meta.setdefault("落款", _squash(s))
            continue
        if profile.addressee_line.match(s):
            meta.setdefault("主送机关", s.rstrip("：:"))
            continue
        if body_started and profile.note_line.match(s):
            meta.setdefault("附注", s)
            continue
        if profile.unit_line.match(s) and stack:
            rank, heading = stack[-1]  # the unit belongs to the caption it stands under
            stack[-1] = (rank, f"{heading}（{s.strip('（）()')}）")
            continue
        if line.heading_level is not None:
            # Format-marked heading (markdown #, docx Heading N, html hN): its level is the rank.
            push_heading(10 + line.heading_level, s)
            continue
        if profile.part_heading.match(s) and len(s) <= profile.short_line_chars:
            push_heading(-2, s)  # 附件, 名词解释: a new part, whatever came before
            continue
        rank = heading_rank(s, profile)
        if rank is not None and not profile.not_heading.match(s):
            heading, has_body = _split_inline_heading(s)
            push_heading(rank, heading)
            if has_body:
                add_paragraph(line)
            elif rank >= 0:
                bare[:] = [rank, line, tuple(h for _, h in stack)]
            continue
        if not body_started:
            if _is_short_label(s, profile) or (profile.title_line.search(s) and len(s) <= 80
                                               and not any(p in s for p in "。！？")):
                header_lines.append(s)
                continue
            add_paragraph(line)
            continue
        if _is_short_label(s, profile) and not profile.figure_caption.match(s) and nxt \
                and not _BARE_DATE_RE.match(nxt):
            push_heading(-1, s)  # a short line between paragraphs: an unnumbered heading
            continue
        add_paragraph(line)

    flush_bare()
    meta.pop("_trailer", None)
    # A closing line naming a body ("中共济南市委") is a signature, not content.
    if paragraphs and len(paragraphs[-1].text) <= 30 and paragraphs[-1].text.endswith(profile.issuer_suffixes) \
            and not any(p in paragraphs[-1].text for p in profile.sentence_punct + "：:"):
        meta.setdefault("落款", paragraphs.pop().text)

    title = _title(meta, header_lines, title_parts, profile) or Path(path).stem
    if header_lines:
        meta.setdefault("页眉", " / ".join(h for h in header_lines if _squash(h) not in _squash(title)))
        if not meta["页眉"]:
            meta.pop("页眉")
    date = next((d for k in profile.date_keys + ("页面日期",) if k in meta and (d := iso_date(meta[k]))), "")
    issuer = _issuer(meta, title, profile)
    places = place_names(issuer, profile) if issuer else []
    if not places and (not issuer or issuer == "人民政府"):
        # A report's speaker (省长 李炳军) may not name the place: the place it was
        # delivered in (在贵州省第十四届人民代表大会…), or its title's, does.
        places = place_names(meta.get("报告日期", ""), profile) or place_names(title, profile)
        if places:
            issuer = places[0] + "人民政府"
            places = places[:1]
    source = meta.get("来源") or meta.get("发文机关") or ""
    return Document(doc_id=doc_id, path=path, title=title, content_hash=content_hash,
                    paragraphs=paragraphs, date=date, source=source, issuer=issuer,
                    place=places[-1] if places else "", doc_number=meta.get("发文字号", ""),
                    metadata=meta, warnings=warnings)


def _title(meta: dict, header_lines: list[str], title_parts: list[str], profile: Profile) -> str:
    """The 标题 field; else the header line(s) naming the genre (「…关于…的通知」,
    「2026年××省政府工作报告」), joined when a title is split over lines; else the first
    header line or the format's own title."""
    if meta.get("标题"):
        return meta["标题"]
    for i in range(len(header_lines)):
        joined = ""
        for part in header_lines[i:i + 3]:
            joined += part
            if profile.title_line.search(joined):
                return joined
    if title_parts:
        return title_parts[0]
    return header_lines[0] if header_lines else ""


def _issuer(meta: dict, title: str, profile: Profile) -> str:
    """The issuing body: 发文机关; else the signature, when it names a body; else the title's
    text before 关于 or 转发; else, for a report, the government its speaker heads."""
    if meta.get("发文机关"):
        return meta["发文机关"]
    signature = meta.get("落款", "")
    if signature and signature.endswith(profile.issuer_suffixes):
        return signature
    head = re.split(r"关于|转发|印发", title)[0]
    if head != title and head.endswith(profile.issuer_suffixes):
        return head
    speaker = _squash(meta.get("报告人", ""))
    if m := profile.speaker_line.match(speaker):
        place = m.group("place") or ""
        return place + "人民政府" if place not in profile.not_places else "人民政府"
    if title.endswith("政府工作报告"):
        return "人民政府"  # whose: the place it was delivered in (see structure)
    return ""


def document_label(title: str, place: str) -> str:
    """How a document is named to a reader and in its chunks' headers: its title, with the
    issuer's place when the title does not say whose it is (five provinces' reports are
    all titled 「政府工作报告」)."""
    return f"{title}（{place}）" if place and place not in title else title


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_document(path: Path, doc_id: str | None = None, profile: Profile = ZH_GOV) -> Document:
    """Read one file into a Document. Raises DocumentError with the file's name."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DocumentError(f"{path.name}: unsupported file type {path.suffix!r} "
                            f"(supported: {', '.join(SUPPORTED_SUFFIXES)})")
    try:
        text, blocks = reader(path)
        digest = file_hash(path)
    except DocumentError:
        raise
    except OSError as exc:
        raise DocumentError(f"{path.name}: cannot read ({exc.strerror or exc})") from None
    except Exception as exc:  # a parser library failing on a malformed file
        raise DocumentError(f"{path.name}: cannot parse ({type(exc).__name__}: {exc})") from None
    doc = structure(doc_id or path.name, str(path), text, blocks, digest, profile)
    if not doc.paragraphs:
        found = f"only {', '.join(sorted(k for k in doc.metadata if not k.startswith('_')))}" \
            if doc.metadata else "nothing"
        raise DocumentError(f"{path.name}: no body text found ({found}; page chrome or "
                            f"metadata only?)")
    return doc


def find_files(paths: list[Path]) -> list[Path]:
    """Supported files under the given files/folders, in a stable order."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found.extend(sorted(f for f in p.rglob("*") if f.is_file()
                                and f.suffix.lower() in SUPPORTED_SUFFIXES
                                and not any(part.startswith(".") for part in f.relative_to(p).parts)))
        elif p.is_file():
            found.append(p)
        else:
            raise DocumentError(f"{p}: no such file or folder")
    return found
