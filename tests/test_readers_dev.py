"""Readers on real documents the rules were not written for: the development corpus
(eval/corpus-dev: gov.cn pages saved as .html, provincial work reports as .txt) and its
GBK, .docx and .pdf copies. Each test states what a reader of the document would expect."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from rag.documents import DocumentError, load_document
from rag.profile import ZH_GOV

from .conftest import CORPUS

REPO = Path(__file__).resolve().parents[1]
DEV = REPO / "eval" / "corpus-dev"
FORMATS = REPO / "eval" / "corpus-dev-formats"
ALL_DOCS = sorted(DEV.iterdir()) + sorted(CORPUS.iterdir()) + sorted(FORMATS.iterdir())

# (file, title, issuer, place, date, 发文字号) as the page's metadata box, the report's
# subtitle or its signature states them.
EXPECTED = [
    ("state-council-office-2018-public-holidays-2019-notice.html",
     "国务院办公厅关于2019年部分节假日安排的通知", "国务院办公厅", "", "2018-12-04", "国办发明电〔2018〕15号"),
    ("state-council-office-1996-tibet-classes-expansion-forwarding-notice.html",
     "国务院办公厅转发国家教委关于内地西藏班（校）扩大规模有关问题请示的通知", "国务院办公厅", "",
     "1996-07-17", "国办发〔1996〕32号"),  # 成文日期, not the 2018 re-posting date
    ("state-council-office-2004-sichuan-inspection-issues-handling-letter.html",
     "国务院办公厅关于四川省在温家宝总理考察工作时所提问题和建议办理情况的函", "国务院办公厅", "",
     "2004-10-15", "国办函〔2004〕71号"),  # a national body writing to a province
    ("state-council-2018-iit-special-deductions-interim-measures-notice.html",
     "国务院关于印发个人所得税专项附加扣除暂行办法的通知", "国务院", "", "2018-12-13", "国发〔2018〕41号"),
    ("guizhou-2026-government-work-report.txt", "政府工作报告", "贵州省人民政府", "贵州省", "2026-01-27", ""),
    ("hainan-2026-government-work-report.txt", "政府工作报告", "海南省人民政府", "海南省", "2026-01-27", ""),
    ("inner-mongolia-2026-government-work-report.txt", "2026年内蒙古自治区政府工作报告",
     "内蒙古自治区人民政府", "内蒙古自治区", "2026-02-04", ""),
    ("shaanxi-2026-government-work-report.txt", "陕西省2026年政府工作报告", "陕西省人民政府", "陕西省",
     "2026-01-27", ""),  # delivered, not posted (2026-02-02)
    ("sichuan-2026-government-work-report.txt", "2026年四川省人民政府工作报告", "四川省人民政府", "四川省",
     "2026-02-03", ""),
]


@pytest.mark.parametrize("name,title,issuer,place,date,number", EXPECTED)
def test_metadata_of_real_documents(name, title, issuer, place, date, number):
    doc = load_document(DEV / name)
    assert (doc.title, doc.issuer, doc.place, doc.date, doc.doc_number) == (title, issuer, place, date, number)


@pytest.mark.parametrize("copy,original", [
    ("shaanxi-2026-government-work-report.gbk.txt", "shaanxi-2026-government-work-report.txt"),
    ("hainan-2026-government-work-report.docx", "hainan-2026-government-work-report.txt"),
    ("guizhou-2026-government-work-report.pdf", "guizhou-2026-government-work-report.txt"),
])
def test_other_formats_read_as_their_text(copy, original):
    doc, ref = load_document(FORMATS / copy), load_document(DEV / original)
    assert (doc.title, doc.issuer, doc.place, doc.date) == (ref.title, ref.issuer, ref.place, ref.date)
    squash = lambda ps: re.sub(r"\s+", "", "".join(p.text for p in ps))  # noqa: E731
    if copy.endswith(".pdf"):  # a PDF's paragraphs are re-joined from wrapped lines
        assert squash(doc.paragraphs) == squash(ref.paragraphs)
    else:
        assert [p.text for p in doc.paragraphs] == [p.text for p in ref.paragraphs]
        assert [p.section for p in doc.paragraphs] == [p.section for p in ref.paragraphs]


# Lines of page furniture seen on these sites; a paragraph must never be one of them.
CHROME = ["当前位置", "扫一扫在手机打开当前页", "打印本页", "关闭窗口", "下载", "打印", "全屏", "收藏", "】",
          "【字号：", "【字体：", "分享：", "分享:", "相关链接>>", "相关附件>>", "相关报道：", "首页", ">"]


@pytest.mark.parametrize("path", ALL_DOCS, ids=lambda p: p.name)
def test_no_chrome_or_metadata_line_is_a_paragraph(path):
    doc = load_document(path)
    for p in doc.paragraphs:
        assert p.text not in CHROME
        assert not ZH_GOV.chrome_line.match(p.text), p.text
        assert not re.match(r"^(索\s*引\s*号|标\s*题|发文机关|发文字号|成文日期|发布日期|主\s*题\s*词|来源|"
                            r"时间|责任编辑)\s*[:：]", p.text), p.text
        assert not re.fullmatch(r"[0-9a-f]{32}[:：]?", p.text)
        assert doc.title not in (p.text,), "the title is metadata, not a paragraph"
    assert doc.paragraphs, path.name


def test_page_trailer_is_dropped():
    # After 责任编辑 come related links with hex ids, buttons, then the title and the
    # opening sentence repeated: none of it is the report.
    doc = load_document(DEV / "sichuan-2026-government-work-report.txt")
    texts = [p.text for p in doc.paragraphs]
    assert not any("热议政府工作报告" in t or "关于政府工作报告的决议" in t for t in texts)
    assert texts[-1].startswith("20.“一件事”全链条专项整治")
    assert sum(t.startswith("各位代表：现在，我代表省人民政府") for t in texts) == 1


def test_a_word_broken_out_where_markup_was_is_rejoined():
    doc = load_document(DEV / "sichuan-2026-government-work-report.txt")
    note = next(p for p in doc.paragraphs if p.text.startswith("7.“双向揭榜挂帅”"))
    assert "“双向揭榜挂帅”的简称" in note.text and note.text.endswith("。")
    assert note.section == ("名词解释", "7.“双向揭榜挂帅”")


def test_table_rows_carry_their_headers_under_the_tables_caption():
    doc = load_document(DEV / "state-council-office-1996-tibet-classes-expansion-forwarding-notice.html")
    row = next(p for p in doc.paragraphs if p.text.startswith("省（市）：广东"))
    # Merged header cells (分年度招生任务 over 1996年–1998年) are spread over their columns.
    assert row.text == ("省（市）：广东；1995年招生人数：120（扩招）；扩招：30；分年度招生任务·1996年：120；"
                        "分年度招生任务·1997年：135；分年度招生任务·1998年：150")
    assert any("扩大招生计划表" in s for s in row.section)
    assert doc.warnings == ["merged cells spread over the rows and columns they cover"]
    assert sum(p.text.startswith("省（市）：") for p in doc.paragraphs) == 20  # 总计 and 19 provinces


def test_annex_items_are_paragraphs_under_the_annex():
    doc = load_document(DEV / "inner-mongolia-2026-government-work-report.txt")
    items = [p for p in doc.paragraphs if p.section and p.section[0].startswith("附件")]
    assert len(items) == 10
    assert items[1].text.startswith("2.实现城镇新增就业18万人以上") and "（牵头单位：人社厅）" in items[1].text
    assert items[1].section[0] == "附件 2026年自治区民生实事"
    # An unnumbered top-level heading is a section too.
    assert doc.paragraphs[1].section[0] == "“十四五”时期发展成就和2025年工作回顾"


def test_chapters_and_articles():
    doc = load_document(DEV / "state-council-2018-iit-special-deductions-interim-measures-notice.html")
    art = next(p for p in doc.paragraphs if p.text.startswith("第五条"))
    assert art.section == ("个人所得税专项附加扣除暂行办法", "第二章　子女教育", "第五条")
    assert "每月1000元" in art.text
    # The article's further paragraphs stay under it.
    nxt = doc.paragraphs[art.number]
    assert nxt.section[-1] == "第五条" and nxt.text.startswith("学历教育包括")


def test_run_in_labels_and_signature():
    doc = load_document(DEV / "state-council-office-2018-public-holidays-2019-notice.html")
    texts = [p.text for p in doc.paragraphs]
    spring = next(p for p in doc.paragraphs if p.text.startswith("二、春节："))
    assert spring.section == ("二、春节",) and "2月4日至10日放假调休，共7天" in spring.text
    assert doc.metadata["落款"] == "国务院办公厅" and "国务院办公厅" not in texts
    assert not any(t.startswith(("国务院办公厅关于2019年", "部分节假日安排的通知")) for t in texts)


def test_notes_with_a_label_line_and_a_definition_line():
    doc = load_document(DEV / "hainan-2026-government-work-report.txt")
    note = next(p for p in doc.paragraphs if p.text.startswith("［22］三资："))
    assert note.text == "［22］三资：农村集体所有的资金、资产、资源。" and note.section == ("注释",)


def test_figure_captions_of_an_annex_of_images():
    doc = load_document(DEV / "state-council-office-2018-rescue-vehicle-plates-notice.html")
    captions = [p.text for p in doc.paragraphs if p.text.startswith("图")]
    assert captions == ["图1　汽车号牌编码规则", "图2　摩托车号牌编码规则", "图3　汽车号牌尺寸（单位：毫米）",
                        "图4　摩托车号牌尺寸（单位：毫米）", "图5　汽车前号牌", "图6　汽车后号牌",
                        "图7　摩托车后部单只号牌"]  # 图5 and 图6 share a line, spaces apart
    assert doc.metadata["附注"] == "（此件公开发布）"


# -- bad input --------------------------------------------------------------------------

def test_inline_tags_do_not_split_a_sentence(tmp_path):
    page = tmp_path / "p.html"
    page.write_text("<html><body><h1>关于充电设施建设的通知</h1><p>全市新建充电桩<img src='x.png'>120个，"
                    "<b>覆盖</b>全部街道。</p><p>一、总体要求</p><p>按期完成建设任务。</p></body></html>",
                    encoding="utf-8")
    doc = load_document(page)
    assert doc.paragraphs[0].text == "全市新建充电桩120个，覆盖全部街道。"


def test_a_page_of_chrome_only_names_what_was_found(tmp_path):
    page = tmp_path / "chrome.html"
    page.write_text("<html><body><div>首页</div><div>&gt;</div><div>通知公告</div><div>打印</div>"
                    "<div>关闭窗口</div><div>扫一扫在手机打开当前页</div></body></html>", encoding="utf-8")
    with pytest.raises(DocumentError, match=r"chrome\.html: no body text found"):
        load_document(page)


def test_tab_separated_text_is_a_table(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("2024年重点项目表\n序号\t项目\t总投资\n1\t北区污水厂\t3.2亿元\n2\t南湖公园\t1.1亿元\n",
                    encoding="utf-8")
    doc = load_document(path)
    assert [p.text for p in doc.paragraphs] == ["序号：1；项目：北区污水厂；总投资：3.2亿元",
                                                "序号：2；项目：南湖公园；总投资：1.1亿元"]


def test_docx_table_rows_with_a_merged_header(tmp_path):
    import docx
    d = docx.Document()
    d.add_paragraph("关于下达2024年补助资金的通知")
    d.add_paragraph("现将补助资金下达如下。")
    t = d.add_table(rows=4, cols=3)
    t.cell(0, 0).merge(t.cell(1, 0)).text = "地区"
    t.cell(0, 1).merge(t.cell(0, 2)).text = "补助资金"
    t.cell(1, 1).text, t.cell(1, 2).text = "中央", "省级"
    for r, (a, b, c) in enumerate([("甲县", "100", "50"), ("乙县", "80", "40")], start=2):
        t.cell(r, 0).text, t.cell(r, 1).text, t.cell(r, 2).text = a, b, c
    path = tmp_path / "t.docx"
    d.save(str(path))
    doc = load_document(path)
    assert doc.title == "关于下达2024年补助资金的通知"
    assert "地区：乙县；补助资金·中央：80；补助资金·省级：40" in [p.text for p in doc.paragraphs]


def test_sample_corpus_issue_headings_stay_headings():
    # (4)2019年…不增反降。 heads the measures under it: it is context, not a paragraph; a
    # heading with nothing under it (the annex's （一）小型车辆涂装样图。) is one.
    doc = load_document(CORPUS / "laiwu-district-2021-02-08.txt")
    assert len(doc.paragraphs) == 54
    assert not any(p.text.startswith("(4)2019年济南市考核莱芜区") for p in doc.paragraphs)
    rescue = load_document(DEV / "state-council-office-2018-rescue-vehicle-plates-notice.html")
    assert rescue.paragraphs[-1].text == "（三）大型车辆涂装样图。"
