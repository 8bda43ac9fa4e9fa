"""Reading every supported format and encoding into paragraphs with section paths."""
from __future__ import annotations

from pathlib import Path

import pytest

from rag.documents import DocumentError, decode_text, load_document

from .conftest import CORPUS, JINAN, LAIWU

BODY = [
    "一、总体情况",
    "为推进整改工作,市里成立了领导小组。",
    "(一)组织领导",
    "一是强化领导。成立由市委书记任组长的领导小组,下设5个专项工作组。二是压实责任。",
    "1.关于防汛问题",
    "(1)指挥部设置不规范。",
    "将防汛应急指挥部调整设在应急管理部门,完成调整3处。",
]


def _check_structure(doc):
    texts = [p.text for p in doc.paragraphs]
    assert texts == [BODY[1], BODY[3], BODY[6]]
    assert doc.paragraphs[1].section == ("一、总体情况", "(一)组织领导")
    assert doc.paragraphs[2].section == ("一、总体情况", "(一)组织领导", "1.关于防汛问题",
                                         "(1)指挥部设置不规范")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
def test_txt_in_each_encoding(tmp_path, encoding):
    path = tmp_path / "doc.txt"
    path.write_bytes("\n".join(["关于整改情况的通报", "发布日期:2024-01-02", *BODY]).encode(encoding))
    doc = load_document(path)
    assert doc.title == "关于整改情况的通报"
    assert doc.date == "2024-01-02"
    _check_structure(doc)


def test_gbk_and_utf8_read_the_same(tmp_path):
    text = "\n".join(BODY)
    assert decode_text(text.encode("gbk")) == decode_text(text.encode("utf-8")) == text


def test_undecodable_bytes_are_a_clear_error(tmp_path):
    path = tmp_path / "garbage.txt"
    path.write_bytes(bytes(range(256)) * 20)
    with pytest.raises(DocumentError, match="garbage.txt"):
        load_document(path)


def test_markdown_headings_and_text(tmp_path):
    path = tmp_path / "doc.md"
    path.write_text("# 关于整改情况的通报\n\n发布日期:2024-01-02\n\n" + "\n\n".join(BODY), encoding="utf-8")
    doc = load_document(path)
    assert doc.title == "关于整改情况的通报"
    _check_structure(doc)


def test_markdown_heading_levels_make_the_section_path(tmp_path):
    path = tmp_path / "doc.md"
    path.write_text("# 标题\n\n## 第一部分\n\n### 细节\n\n这是**正文**内容,有具体措施。\n", encoding="utf-8")
    doc = load_document(path)
    assert doc.paragraphs[0].text == "这是正文内容,有具体措施。"
    assert doc.paragraphs[0].section == ("第一部分", "细节")


def test_docx(tmp_path):
    import docx
    d = docx.Document()
    d.add_heading("关于整改情况的通报", level=0)
    d.add_paragraph("发布日期:2024-01-02")
    for line in BODY:
        d.add_paragraph(line)
    path = tmp_path / "doc.docx"
    d.save(str(path))
    doc = load_document(path)
    assert doc.title == "关于整改情况的通报"
    _check_structure(doc)


def test_broken_docx_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.docx"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DocumentError, match="broken.docx"):
        load_document(path)


def test_html(tmp_path):
    body = "".join(f"<p>{line}</p>" for line in BODY)
    html = ("<html><head><meta charset='gbk'><title>关于整改情况的通报</title><script>var x='忽略';</script>"
            f"</head><body><nav>首页 > 工作</nav><div><p>发布日期:2024-01-02</p>{body}</div></body></html>")
    path = tmp_path / "doc.html"
    path.write_bytes(html.encode("gbk"))
    doc = load_document(path)
    assert doc.title == "关于整改情况的通报"
    assert doc.date == "2024-01-02"
    _check_structure(doc)


CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")


def _pdf(path: Path, lines: list[str]) -> None:
    from fpdf import FPDF
    pdf = FPDF()
    pdf.add_page()
    pdf.add_font("wqy", fname=str(CJK_FONT), collection_font_number=0)
    pdf.set_font("wqy", size=11)
    for line in lines:
        pdf.multi_cell(0, 8, line, new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))


@pytest.mark.skipif(not CJK_FONT.exists(), reason="needs fonts-wqy-microhei (installed by scripts/setup.sh --test)")
def test_pdf_text_layer_with_wrapped_lines(tmp_path):
    long_para = "将防汛应急指挥部调整设在应急管理部门,完成调整3处," + "并同步修订应急预案和值班制度," * 6 + "确保指挥顺畅。"
    path = tmp_path / "doc.pdf"
    _pdf(path, ["关于整改情况的通报", "发布日期:2024-01-02", "一、总体情况", long_para])
    doc = load_document(path)
    assert doc.title == "关于整改情况的通报"
    assert [p.text for p in doc.paragraphs] == [long_para]  # wrapped lines joined back
    assert doc.paragraphs[0].section == ("一、总体情况",)


def test_pdf_without_text_layer_is_a_clear_error(tmp_path):
    from fpdf import FPDF
    pdf = FPDF()
    pdf.add_page()
    pdf.rect(10, 10, 50, 50)
    path = tmp_path / "scan.pdf"
    pdf.output(str(path))
    with pytest.raises(DocumentError, match="没有文字层，可能是扫描件"):
        load_document(path)


def test_unsupported_type(tmp_path):
    path = tmp_path / "a.xlsx"
    path.write_bytes(b"x")
    with pytest.raises(DocumentError, match="unsupported"):
        load_document(path)


# -- the sample corpus --------------------------------------------------------------

def test_laiwu_header_becomes_metadata():
    doc = load_document(CORPUS / LAIWU)
    assert doc.title == "中共济南市莱芜区委关于巡视整改进展情况的通报"
    assert doc.date == "2021-02-08"
    assert doc.source == "山东省纪委监委网站"
    texts = [p.text for p in doc.paragraphs]
    assert not any(t.startswith(("首页>", "来源:", "中共济南市莱芜区委关于")) for t in texts)
    assert "中共济南市莱芜区委" not in texts and "2021年2月8日" not in texts  # the signature
    assert texts[0].startswith("根据省委统一部署")


def test_jinan_header_becomes_metadata():
    doc = load_document(CORPUS / JINAN)
    assert doc.title == "中共济南市委关于十二届省委第一轮巡视集中整改进展情况的通报"
    assert doc.date == "2023-04-25"
    assert doc.source == "市委办公厅"
    texts = [p.text for p in doc.paragraphs]
    assert not any(t.startswith(("2023年04月25日", "发布日期", "信息来源", "编辑:")) for t in texts)


def test_laiwu_section_paths():
    doc = load_document(CORPUS / LAIWU)
    sand = next(p for p in doc.paragraphs if "砂石资源整治工作专班" in p.text)
    assert sand.section == (
        "二、省委巡视组反馈意见整改落实情况",
        "(一)关于“贯彻落实党中央重大决策部署、省委工作要求政治站位不高,创造性开展工作效果不明显”方面问题",
        "6.关于“打赢污染防治攻坚战站位不高,措施不硬”的问题",
        "(18)铁腕打击、综合治理私挖滥采砂石不力",
    )
    # Heading lines are context, not paragraphs; 一是… starts a paragraph, not a heading.
    texts = [p.text for p in doc.paragraphs]
    assert "(18)铁腕打击、综合治理私挖滥采砂石不力。" not in texts
    assert any(t.startswith("一是提高政治站位") for t in texts)
    first_steps = next(p for p in doc.paragraphs if p.text.startswith("一是提高政治站位"))
    assert first_steps.section == ("一、整改工作基本情况",)


def test_jinan_inline_headings_are_both_section_and_paragraph():
    doc = load_document(CORPUS / JINAN)
    p = next(p for p in doc.paragraphs if p.text.startswith("(一)全面提升巡视整改思想自觉。"))
    assert p.section == ("一、整改工作基本情况", "(一)全面提升巡视整改思想自觉")
    flood = next(p for p in doc.paragraphs if p.text.startswith("3.针对“济南市及区县"))
    assert flood.section[0] == "二、省委巡视反馈意见整改落实情况"
    assert flood.section[-1].endswith("的问题") and flood.section[-1].startswith("3.针对")


@pytest.mark.parametrize("name", [LAIWU, JINAN])
def test_offsets_point_at_the_paragraph(name):
    text = (CORPUS / name).read_text(encoding="utf-8")
    doc = load_document(CORPUS / name)
    numbers = [p.number for p in doc.paragraphs]
    assert numbers == list(range(1, len(numbers) + 1))
    for p in doc.paragraphs:
        assert text[p.start:p.end] == p.text
