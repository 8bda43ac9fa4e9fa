"""Documents → citable paragraphs.

A reader per format turns a file into ``Block``s (a line of text, or a heading the format
marks explicitly). ``structure`` then does what every format shares: header lines become
metadata (title, date, source), Chinese official-document headings (一、/(一)/1./(1))
become the section path, and the remaining lines become numbered paragraphs with their
character offsets in the extracted text.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

SUPPORTED_SUFFIXES = (".txt", ".md", ".docx", ".html", ".htm", ".pdf")


class DocumentError(ValueError):
    """A file that cannot be read, decoded or parsed."""


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
    metadata: dict[str, str] = field(default_factory=dict)

    def meta_dict(self) -> dict:
        return {"doc_id": self.doc_id, "path": self.path, "title": self.title,
                "content_hash": self.content_hash, "date": self.date, "source": self.source,
                "metadata": self.metadata, "paragraphs": len(self.paragraphs)}


@dataclass(frozen=True)
class Block:
    text: str
    start: int  # offset of text in the extracted text
    heading_level: int | None = None  # set when the format itself marks a heading


# ---------------------------------------------------------------------------------------
# Readers: each returns (extracted text, blocks) and uses a maintained library.

def decode_text(data: bytes, name: str = "") -> str:
    """Decode bytes that are UTF-8 (with or without BOM) or GB18030/GBK."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        # GB18030 is a superset of GBK and GB2312; strict decoding rejects random bytes
        # often enough, and charset_normalizer confirms it is really Chinese text.
        text = data.decode("gb18030")
    except UnicodeDecodeError:
        text = None
    from charset_normalizer import from_bytes
    best = from_bytes(data).best()
    if text is not None and (best is None or best.encoding in {"gb18030", "gbk", "gb2312", "big5"}
                             or _cjk_share(text) > 0.3):
        return text
    if best is not None and best.encoding not in {"utf_8"} and _cjk_share(str(best)) > 0.3:
        return str(best)
    raise DocumentError(f"{name or 'file'}: cannot decode (not UTF-8 or GB18030/GBK text)")


def _cjk_share(text: str) -> float:
    letters = [c for c in text if not c.isspace()]
    if not letters:
        return 0.0
    return sum("\u4e00" <= c <= "\u9fff" for c in letters) / len(letters)


def _line_blocks(text: str) -> list[Block]:
    blocks, pos = [], 0
    for line in text.splitlines(keepends=True):
        stripped = line.strip().strip("\u3000").strip()
        if stripped:
            blocks.append(Block(stripped, pos + line.index(stripped[0])))
        pos += len(line)
    return blocks


def read_txt(path: Path) -> tuple[str, list[Block]]:
    text = decode_text(path.read_bytes(), path.name)
    return text, _line_blocks(text)


def read_md(path: Path) -> tuple[str, list[Block]]:
    from markdown_it import MarkdownIt
    text = decode_text(path.read_bytes(), path.name)
    lines = text.splitlines(keepends=True)
    line_starts = [0]
    for line in lines:
        line_starts.append(line_starts[-1] + len(line))
    blocks: list[Block] = []
    tokens = MarkdownIt("commonmark").parse(text)
    level = None
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open":
            level = int(tok.tag[1:])
        elif tok.type == "inline" and tok.map:
            # Plain text of the inline children: drop emphasis/link markup.
            plain = "".join(c.content for c in tok.children or [] if c.type in {"text", "code_inline"}
                            ) or tok.content
            for part in plain.splitlines():
                part = part.strip()
                if part:
                    start = text.find(part, line_starts[tok.map[0]])
                    blocks.append(Block(part, max(start, line_starts[tok.map[0]]), level))
            level = None
    return text, blocks


def _join_blocks(parts: list[tuple[str, int | None]]) -> tuple[str, list[Block]]:
    """Lay extracted parts out as one text, a blank line apart, recording offsets."""
    chunks, blocks, pos = [], [], 0
    for text, level in parts:
        text = text.strip().strip("\u3000").strip()
        if not text:
            continue
        blocks.append(Block(text, pos, level))
        chunks.append(text)
        pos += len(text) + 2
    return "\n\n".join(chunks), blocks


def read_docx(path: Path) -> tuple[str, list[Block]]:
    import docx
    try:
        d = docx.Document(str(path))
    except Exception as exc:  # python-docx raises several types for broken packages
        raise DocumentError(f"{path.name}: not a readable .docx file ({exc})") from None
    parts: list[tuple[str, int | None]] = []
    for p in d.paragraphs:
        style = (p.style.name if p.style is not None else "") or ""
        level = None
        if style == "Title":
            level = 0
        elif m := re.match(r"Heading (\d)", style):
            level = int(m.group(1))
        for line in p.text.splitlines():
            parts.append((line, level))
    for table in d.tables:
        for row in table.rows:
            cells = []
            for c in row.cells:
                if c.text.strip() and c.text.strip() not in cells:
                    cells.append(c.text.strip())
            parts.append((" | ".join(cells), None))
    return _join_blocks(parts)


_HTML_BLOCKS = ["title", "h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "td", "th", "pre",
                "blockquote", "dt", "dd", "caption", "div"]


def read_html(path: Path) -> tuple[str, list[Block]]:
    from bs4 import BeautifulSoup
    raw = path.read_bytes()
    try:
        html = decode_text(raw, path.name)
    except DocumentError:
        html = raw  # let BeautifulSoup sniff a <meta charset>
    soup = BeautifulSoup(html, "lxml")
    for tag in soup(["script", "style", "noscript", "nav", "footer", "header", "form"]):
        tag.decompose()
    parts: list[tuple[str, int | None]] = []
    for el in soup.find_all(_HTML_BLOCKS):
        # Only leaf-most blocks: a div that contains other blocks is read through them.
        if el.find(_HTML_BLOCKS):
            continue
        name = el.name
        level = 0 if name == "title" else int(name[1]) if re.fullmatch(r"h\d", name) else None
        for line in el.get_text("\n").splitlines():
            parts.append((line, level))
    return _join_blocks(parts)


def read_pdf(path: Path) -> tuple[str, list[Block]]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError
    try:
        reader = PdfReader(str(path))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, OSError, ValueError, KeyError) as exc:
        raise DocumentError(f"{path.name}: not a readable PDF ({exc})") from None
    if not "".join(pages).strip():
        raise DocumentError(f"{path.name}: the PDF has no text layer (a scan?); run OCR first")
    # A PDF wraps lines inside a paragraph. A line ends its paragraph when it stops short
    # of the right margin, ends a sentence, or is followed by a heading or header line.
    lines = [line.strip() for line in "\n".join(pages).splitlines()]
    lengths = sorted(len(line) for line in lines if line)
    full = lengths[int(len(lengths) * 0.9)] if lengths else 0
    parts: list[tuple[str, int | None]] = []
    current, last = "", ""
    for line in lines:
        ends = last.endswith(("。", "！", "？", ":", "：")) or len(last) < 0.8 * full
        if current and (not line or ends or heading_rank(line) is not None or _is_header_line(line)):
            parts.append((current, None))
            current = ""
        current, last = current + line, line
    if current:
        parts.append((current, None))
    return _join_blocks(parts)


READERS = {".txt": read_txt, ".md": read_md, ".docx": read_docx, ".html": read_html,
           ".htm": read_html, ".pdf": read_pdf}


# ---------------------------------------------------------------------------------------
# Structure: metadata, headings, paragraphs

_CN_NUM = "一二三四五六七八九十百零〇"
# Heading markers of Chinese official documents, outermost first.
_HEADING_PATTERNS = [
    re.compile(rf"^[{_CN_NUM}]+、"),  # 一、
    re.compile(rf"^[（(][{_CN_NUM}]+[）)]"),  # (一)
    re.compile(r"^\d{1,2}[.．、](?!\d)"),  # 1.
    re.compile(r"^[（(]\d{1,3}[）)]"),  # (1)
]
_META_LABELS = ("来源", "信息来源", "文章来源", "发布时间", "发布日期", "发文日期", "成文日期", "日期",
                "作者", "编辑", "责任编辑", "发布机构", "发文机关", "索引号", "文号", "发文字号",
                "浏览次数", "点击数", "字号", "时间")
_META_RE = re.compile(rf"({'|'.join(sorted(_META_LABELS, key=len, reverse=True))})\s*[:：]\s*")
_DATE_RE = re.compile(r"(\d{4})\s*[年\-/.]\s*(\d{1,2})\s*[月\-/.]\s*(\d{1,2})\s*日?")
_BARE_DATE_RE = re.compile(rf"^{_DATE_RE.pattern}(\s*(星期|周)[一二三四五六日天])?(\s*\d{{1,2}}:\d{{2}}(:\d{{2}})?)?$")
_SENTENCE_PUNCT = "。！？；:：,，;"


def heading_rank(line: str) -> int | None:
    for rank, pattern in enumerate(_HEADING_PATTERNS):
        if pattern.match(line):
            return rank
    return None


def _is_header_line(line: str) -> bool:
    return bool(_META_RE.match(line) or _BARE_DATE_RE.match(line) or _is_breadcrumb(line))


def _is_breadcrumb(line: str) -> bool:
    return (len(line) <= 80 and re.search(r"[>›»]", line) is not None
            and not any(p in line for p in "。！？；，,"))


def _iso_date(text: str) -> str:
    m = _DATE_RE.search(text)
    if not m:
        return ""
    y, mo, d = m.groups()
    return f"{int(y):04d}-{int(mo):02d}-{int(d):02d}"


def _split_inline_heading(line: str) -> tuple[str, bool]:
    """Return (heading text, has body after it).

    ``(一)全面提升巡视整改思想自觉。市委高度重视…`` carries its heading inline: the heading
    is the text up to the first sentence end or colon outside quotation marks.
    """
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


def _parse_meta(line: str, meta: dict[str, str]) -> None:
    matches = list(_META_RE.finditer(line))
    for j, m in enumerate(matches):
        end = matches[j + 1].start() if j + 1 < len(matches) else len(line)
        value = line[m.end():end].strip()
        if value:
            meta.setdefault(m.group(1), value)


def structure(doc_id: str, path: str, text: str, blocks: list[Block], content_hash: str) -> Document:
    meta: dict[str, str] = {}
    title = ""
    paragraphs: list[Paragraph] = []
    stack: list[tuple[int, str]] = []  # (rank, heading text)
    body_started = False

    for block in blocks:
        line = block.text
        if _META_RE.match(line):
            _parse_meta(line, meta)
            continue
        if _BARE_DATE_RE.match(line):
            meta.setdefault("日期" if not body_started else "落款日期", line)
            continue
        if not body_started and _is_breadcrumb(line):
            meta.setdefault("栏目", line)
            continue
        if block.heading_level == 0 or (block.heading_level == 1 and not title and not body_started):
            title = title or line  # <title>, docx Title, or a leading # heading
            continue
        if block.heading_level is not None:
            # Format-marked heading (markdown #, docx Heading N, html hN): its level is the rank.
            rank = 10 + block.heading_level
            while stack and stack[-1][0] >= rank:
                stack.pop()
            stack.append((rank, line))
            body_started = True
            continue
        rank = heading_rank(line)
        if rank is not None:
            heading, has_body = _split_inline_heading(line)
            while stack and stack[-1][0] >= rank:
                stack.pop()
            stack.append((rank, heading))
            body_started = True
            if not has_body:
                continue  # a heading line is context for what follows, not an answer
        elif not body_started and not title and not any(p in line for p in "。；，,"):
            title = line  # the first plain line of the header zone is the title
            continue
        else:
            body_started = True
        paragraphs.append(Paragraph(doc_id, len(paragraphs) + 1, line,
                                    tuple(h for _, h in stack), block.start,
                                    block.start + len(line)))

    # Closing lines such as the issuer's name ("中共济南市委") are a signature, not content.
    while paragraphs and len(paragraphs[-1].text) <= 30 and not any(
            p in paragraphs[-1].text for p in _SENTENCE_PUNCT):
        meta.setdefault("落款", paragraphs.pop().text)

    date = ""
    for label in ("发布时间", "发布日期", "发文日期", "成文日期", "日期", "时间", "落款日期"):
        if label in meta and (date := _iso_date(meta[label])):
            break
    source = next((meta[k] for k in ("来源", "信息来源", "文章来源", "发布机构", "发文机关") if k in meta), "")
    return Document(doc_id=doc_id, path=path, title=title or Path(path).stem,
                    content_hash=content_hash, paragraphs=paragraphs, date=date,
                    source=source, metadata=meta)


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_document(path: Path, doc_id: str | None = None) -> Document:
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
    doc = structure(doc_id or path.name, str(path), text, blocks, digest)
    if not doc.paragraphs:
        raise DocumentError(f"{path.name}: no text paragraphs found")
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
