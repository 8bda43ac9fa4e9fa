"""Readers: one per file format, each turning a file into ``Block``s through a maintained
library (markdown-it, python-docx, BeautifulSoup/lxml with readability-lxml, pypdf).

A block is a line of text as the format lays it out, a table row (with its column
headers), or a metadata field the format marks as such (a gov.cn page's label/value box).
What every format shares (which lines are headings, metadata, chrome or body) is decided
afterwards by ``rag.documents.structure`` from the corpus profile; readers only keep the
format's own structure and never guess at the genre.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


class DocumentError(ValueError):
    """A file that cannot be read, decoded or parsed."""


@dataclass(frozen=True)
class Block:
    text: str
    start: int  # offset of text in the extracted text
    heading_level: int | None = None  # set when the format itself marks a heading (0 = title)
    kind: str = "text"  # text | row (a table row, headers carried) | meta (label: value)
    label: str = ""  # for kind=meta: the field's label
    warning: str = ""  # something the reader noticed about this part (merged cells…)


# ---------------------------------------------------------------------------------------
# Text decoding

def decode_text(data: bytes, name: str = "") -> str:
    """Decode bytes that are UTF-8 (with or without BOM), UTF-16 (BOM) or GB18030/GBK."""
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


_SPACES = re.compile(r"[\s\u3000\xa0]+")
_STRAY_ENTITY = re.compile(r"&(?:[a-zA-Z]{1,8}|#\d{1,6});")  # a broken entity left as text: &sp;


def clean(text: str) -> str:
    """One line's text with stray entities dropped and its ends stripped (inner spacing is
    kept: runs of spaces separate items, e.g. a signature from its date)."""
    return _STRAY_ENTITY.sub(" ", text).strip(" \t\r\n\u3000\xa0")


def _join_blocks(parts: list[Block | tuple[str, int | None]]) -> tuple[str, list[Block]]:
    """Lay extracted parts out as one text, a blank line apart, recording offsets."""
    chunks, blocks, pos = [], [], 0
    for part in parts:
        if isinstance(part, tuple):
            part = Block(part[0], 0, part[1])
        text = clean(part.text)
        if not text and part.kind != "meta":
            continue
        blocks.append(Block(text, pos, part.heading_level, part.kind, part.label, part.warning))
        chunks.append(text)
        pos += len(text) + 2
    return "\n\n".join(chunks), blocks


# ---------------------------------------------------------------------------------------
# Tables: rows that carry their column headers

def table_rows(grid: list[list[str]], header_rows: int) -> list[str]:
    """Each body row of a table as 「header：value；header：value」.

    ``grid`` has merged cells already spread over the rows and columns they cover. The
    header of a column joins its header rows' distinct texts (分年度招生任务 · 1996年).
    A row whose cells are all empty is dropped.
    """
    width = max((len(r) for r in grid), default=0)
    grid = [r + [""] * (width - len(r)) for r in grid]
    headers = []
    for col in range(width):
        names: list[str] = []
        for row in grid[:header_rows]:
            name = _SPACES.sub("", row[col])
            if name and name not in names:
                names.append(name)
        headers.append("·".join(names))
    rows = []
    for row in grid[header_rows:]:
        cells = []
        for col, value in enumerate(row):
            value = _SPACES.sub(" ", value).strip()
            if value and not (col and value == row[col - 1].strip() and headers[col] == headers[col - 1]):
                cells.append(f"{headers[col]}：{value}" if headers[col] else value)
        if cells:
            rows.append("；".join(cells))
    return rows


def count_header_rows(grid: list[list[str]], first_row_spans: list[int]) -> int:
    """Header rows: the first row, and as many more as its cells span downwards, plus
    following rows that hold no figure at all (a second header line)."""
    n = max([1] + first_row_spans)
    while n < len(grid) - 1 and grid[n] and not any(re.search(r"\d", c) for c in grid[n][1:]) \
            and all(c.strip() for c in grid[n]) and any(re.search(r"\d", c) for r in grid[n + 1:] for c in r):
        n += 1
    return n


# ---------------------------------------------------------------------------------------
# Plain text and Markdown

def _line_blocks(text: str) -> list[Block]:
    """Lines of a text, with TAB-separated runs of lines read as tables."""
    blocks: list[Block] = []
    lines = text.splitlines(keepends=True)
    pos, i = 0, 0
    starts = []
    for line in lines:
        starts.append(pos)
        pos += len(line)
    while i < len(lines):
        line = lines[i]
        cols = line.rstrip("\r\n").count("\t")
        if cols >= 1:
            j = i
            while j < len(lines) and lines[j].rstrip("\r\n").count("\t") == cols:
                j += 1
            if j - i >= 3:  # a header and at least two rows
                grid = [[c.strip() for c in row.rstrip("\r\n").split("\t")] for row in lines[i:j]]
                for k, row in enumerate(table_rows(grid, 1)):
                    blocks.append(Block(row, starts[i + 1 + min(k, j - i - 2)], kind="row"))
                i = j
                continue
        stripped = clean(line)
        if stripped:
            blocks.append(Block(stripped, starts[i] + line.index(stripped[0])))
        i += 1
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
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    level = None
    row: list[str] | None = None
    grid: list[list[str]] = []
    for tok in tokens:
        if tok.type == "heading_open":
            level = int(tok.tag[1:])
        elif tok.type == "table_open":
            grid = []
        elif tok.type == "tr_open":
            row = []
        elif tok.type == "tr_close" and row is not None:
            grid.append(row)
            row = None
        elif tok.type == "table_close":
            start = line_starts[tok.map[0]] if tok.map else 0
            blocks.extend(Block(r, start, kind="row") for r in table_rows(grid, 1))
        elif tok.type == "inline" and row is not None:
            row.append(tok.content)
        elif tok.type == "inline" and tok.map:
            # Plain text of the inline children: drop emphasis/link markup.
            plain = "".join(c.content for c in tok.children or [] if c.type in {"text", "code_inline"}
                            ) or tok.content
            for part in plain.splitlines():
                part = clean(part)
                if part:
                    start = text.find(part, line_starts[tok.map[0]])
                    blocks.append(Block(part, max(start, line_starts[tok.map[0]]), level))
            level = None
    return text, blocks


# ---------------------------------------------------------------------------------------
# Word

def read_docx(path: Path) -> tuple[str, list[Block]]:
    import docx
    from docx.table import Table
    try:
        d = docx.Document(str(path))
    except Exception as exc:  # python-docx raises several types for broken packages
        raise DocumentError(f"{path.name}: not a readable .docx file ({exc})") from None
    parts: list[Block] = []
    for item in d.iter_inner_content():  # paragraphs and tables in document order
        if isinstance(item, Table):
            parts.extend(_docx_table(item))
            continue
        style = (item.style.name if item.style is not None else "") or ""
        level = None
        if style == "Title":
            level = 0
        elif m := re.match(r"Heading (\d)", style):
            level = int(m.group(1))
        for line in item.text.splitlines():
            parts.append(Block(line, 0, level))
    return _join_blocks(parts)


def _docx_table(table) -> list[Block]:
    # python-docx repeats a merged cell in every grid position it covers; a cell that
    # repeats the one above it is a vertical merge, so the header is that deep.
    grid, ids = [], []
    for row in table.rows:
        cells = list(row.cells)
        grid.append([c.text.strip() for c in cells])
        ids.append([id(c._tc) for c in cells])
    if not grid:
        return []
    spans = [1]
    if len(ids) > 1:
        depth = 1
        while depth < len(ids) and any(a == b for a, b in zip(ids[depth - 1], ids[depth])):
            depth += 1
        spans = [depth]
    if len(grid[0]) < 2 or len(grid) < 2:  # a one-cell layout frame: its text is text
        return [Block(line, 0) for r in grid for c in dict.fromkeys(r) for line in c.splitlines()]
    return [Block(r, 0, kind="row") for r in table_rows(grid, count_header_rows(grid, spans))]


# ---------------------------------------------------------------------------------------
# HTML

_BLOCK_TAGS = {"p", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "table", "tr", "td",
               "th", "tbody", "thead", "tfoot", "section", "article", "blockquote", "pre", "dd", "dt",
               "dl", "center", "caption", "figure", "figcaption", "main", "body", "html", "hr", "address"}
_DROP_TAGS = ["script", "style", "noscript", "nav", "footer", "header", "form", "iframe", "canvas",
              "svg", "button", "select", "input", "textarea", "object", "embed", "head"]
_LABEL_CELL = re.compile(r"^.{1,8}[:：]$")


def read_html(path: Path) -> tuple[str, list[Block]]:
    from bs4 import BeautifulSoup
    raw = path.read_bytes()
    try:
        html = decode_text(raw, path.name)
    except DocumentError:
        html = raw  # let BeautifulSoup sniff a <meta charset>
    soup = BeautifulSoup(html, "lxml")
    parts: list[Block] = []
    if soup.title and soup.title.get_text(strip=True):
        parts.append(Block(soup.title.get_text(" ", strip=True), 0, 0))
    for tag in soup(_DROP_TAGS):
        tag.decompose()
    # The metadata box: a table of 「label：」 cells each followed by its value.
    for table in soup.find_all("table"):
        if table.find("table") is None and (fields := _label_table(table)) is not None:
            parts.extend(Block(value, 0, kind="meta", label=label) for label, value in fields)
            table.decompose()
    main = _main_content(soup)
    _walk(main, parts)
    return _join_blocks(parts)


def _label_table(table) -> list[tuple[str, str]] | None:
    cells = [_SPACES.sub("", c.get_text()) for c in table.find_all(["td", "th"])]
    labels = [i for i, c in enumerate(cells) if _LABEL_CELL.match(c)]
    if len(labels) < 2 or len(labels) * 2 < len([c for c in cells if c]):
        return None
    fields = []
    for i in labels:
        value = cells[i + 1] if i + 1 < len(cells) and i + 1 not in labels else ""
        fields.append((cells[i][:-1], value))
    return fields


def _main_content(soup):
    """The element holding the page's text, found by readability-lxml (text density),
    as the node of the parsed page so nothing inside it is lost; the whole page when
    readability finds nothing that holds most of the page's text."""
    from bs4 import BeautifulSoup
    body = soup.body or soup
    total = len(_SPACES.sub("", body.get_text()))
    try:
        from readability import Document as Readable
        summary = BeautifulSoup(Readable(str(body)).summary(html_partial=True), "lxml")
    except Exception:  # readability gives up on some pages; the whole page is then read
        return body
    for el in summary.find_all(True):
        found = None
        if el.get("id"):
            found = body.find(id=el["id"])
        if found is None and el.get("class"):
            found = body.find(el.name, class_=el.get("class"))
        if found is not None:
            if len(_SPACES.sub("", found.get_text())) >= 0.5 * total:
                return found
            break
    return body


def _walk(node, parts: list[Block]) -> None:
    """Blocks of an element: text runs between block-level tags, <br> as a line break,
    inline tags (span, b, img, sub) inside the run, so 「充电桩<img>120个。」 stays one line."""
    from bs4 import Comment, NavigableString, Tag
    buffer: list[str] = []

    def flush(level=None):
        text = "".join(buffer)
        buffer.clear()
        for line in text.split("\n"):
            if line.strip(" \t\r\u3000\xa0"):
                parts.append(Block(line, 0, level))

    def visit(el, level=None):
        for child in el.children:
            if isinstance(child, Comment):
                continue
            if isinstance(child, NavigableString):
                buffer.append(re.sub(r"[\r\n\t]+", "", str(child)))
                continue
            if not isinstance(child, Tag):
                continue
            name = child.name
            if name == "br":
                buffer.append("\n")
            elif name == "table" and _is_data_table(child):
                flush(level)
                parts.extend(_html_table(child))
            elif name in _BLOCK_TAGS:
                flush(level)
                child_level = int(name[1]) if re.fullmatch(r"h\d", name) else level
                visit(child, child_level)
                flush(child_level)
            else:
                visit(child, level)

    visit(node)
    flush()


def _is_data_table(table) -> bool:
    """A table of data, not of layout: no table inside it, two columns or more in two
    rows or more, and short cells."""
    if table.find("table") is not None:
        return False
    rows = table.find_all("tr")
    if len(rows) < 2 or max(len(r.find_all(["td", "th"])) for r in rows) < 2:
        return False
    cells = [len(_SPACES.sub("", c.get_text())) for c in table.find_all(["td", "th"])]
    return bool(cells) and sorted(cells)[len(cells) // 2] <= 60


def _html_table(table) -> list[Block]:
    grid: list[list[str]] = []
    pending: dict[tuple[int, int], str] = {}  # cells that a rowspan carries down
    first_spans: list[int] = []
    warning = ""
    for r, tr in enumerate(table.find_all("tr")):
        row: list[str] = []
        col = 0
        for cell in tr.find_all(["td", "th"]):
            while (r, col) in pending:
                row.append(pending.pop((r, col)))
                col += 1
            text = _SPACES.sub(" ", cell.get_text("")).strip()
            rowspan = _span(cell.get("rowspan"))
            colspan = _span(cell.get("colspan"))
            if rowspan > 1 or colspan > 1:
                warning = "merged cells spread over the rows and columns they cover"
            if r == 0:
                first_spans.append(rowspan)
            for c in range(colspan):
                row.append(text)
                for down in range(1, rowspan):
                    pending[(r + down, col + c)] = text
            col += colspan
        while (r, col) in pending:
            row.append(pending.pop((r, col)))
            col += 1
        grid.append(row)
    return [Block(row, 0, kind="row", warning=warning)
            for row in table_rows(grid, count_header_rows(grid, first_spans))]


def _span(value) -> int:
    try:
        return max(1, min(int(str(value).strip()), 100))
    except (TypeError, ValueError):
        return 1


# ---------------------------------------------------------------------------------------
# PDF

def read_pdf(path: Path, page_number: re.Pattern | None = None) -> tuple[str, list[Block]]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    from .profile import ZH_GOV
    page_number = page_number or ZH_GOV.page_number
    try:
        reader = PdfReader(str(path))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, OSError, ValueError, KeyError) as exc:
        raise DocumentError(f"{path.name}: not a readable PDF ({exc})") from None
    if not "".join(pages).strip():
        raise DocumentError(f"{path.name}: 没有文字层，可能是扫描件 (the PDF has no text layer; "
                            f"run OCR first, e.g. ocrmypdf -l chi_sim)")
    # A PDF wraps lines inside a paragraph. A line ends its paragraph when it stops short
    # of the right margin or ends a sentence; a line opening with a comma continues one.
    # Page footers and headers (— 3 —) are furniture.
    lines = [clean(line) for page in pages for line in page.splitlines()]
    lines = [line for line in lines if not page_number.match(line)]
    lengths = sorted(len(line) for line in lines if line)
    full = lengths[int(len(lengths) * 0.9)] if lengths else 0
    parts: list[tuple[str, int | None]] = []
    current, last = "", ""
    for line in lines:
        continues = bool(line) and line[0] in "，、。；：,.;:）)”」》"
        ends = last.endswith(("。", "！", "？", ":", "：")) or len(last) < 0.8 * full
        if current and not continues and (not line or ends):
            parts.append((current, None))
            current = ""
        current, last = current + line, line
    if current:
        parts.append((current, None))
    return _join_blocks(parts)


READERS = {".txt": read_txt, ".md": read_md, ".docx": read_docx, ".html": read_html,
           ".htm": read_html, ".pdf": read_pdf}
SUPPORTED_SUFFIXES = (".txt", ".md", ".docx", ".html", ".htm", ".pdf")
