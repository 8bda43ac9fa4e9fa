"""Retrieval on the development corpus: the rules that make unseen documents searchable
(issuer places stored per document, a named document searched for what follows its
name, table rows and annex items found, page chrome never ranked)."""
from __future__ import annotations

from pathlib import Path

import pytest

from rag.retriever import title_subjects

from .conftest import fake_engine

DEV = Path(__file__).resolve().parents[1] / "eval" / "corpus-dev"


@pytest.fixture(scope="module")
def dev_engine(tmp_path_factory):
    """The dev corpus with the character-bag embedder: the rules, not the model, decide."""
    return fake_engine(tmp_path_factory.mktemp("fake-dev"), corpus=DEV)


def test_places_are_stored_with_each_document(dev_engine):
    docs = dev_engine.store.manifest().documents
    assert docs["hainan-2026-government-work-report.txt"]["place"] == "海南省"
    assert docs["hainan-2026-government-work-report.txt"]["issuer"] == "海南省人民政府"
    assert docs["state-council-2018-employment-promotion-opinions.html"]["place"] == ""


def test_a_report_titled_only_政府工作报告_is_named_with_its_place(dev_engine):
    hits = dev_engine.search("海南地区生产总值增长多少", k=1)
    assert hits[0].doc_title == "政府工作报告（海南省）"
    hits = dev_engine.search("陕西地区生产总值增长多少", k=1)
    assert hits[0].doc_title == "陕西省2026年政府工作报告"  # its title says whose already


def test_a_bare_province_name_scopes_to_its_report(dev_engine):
    # Five reports speak of 地区生产总值 in the same words; only the place tells them apart.
    for asked, doc in [("海南地区生产总值增长多少", "hainan"), ("贵州地区生产总值增长多少", "guizhou"),
                       ("内蒙古地区生产总值增长多少", "inner-mongolia")]:
        hits = dev_engine.search(asked, k=3)
        assert hits[0].paragraph.doc_id.startswith(doc), asked


@pytest.mark.parametrize("title,subject", [
    ("国务院关于印发个人所得税专项附加扣除暂行办法的通知", "个人所得税专项附加扣除暂行办法"),
    ("国务院办公厅关于2019年部分节假日安排的通知", "2019年部分节假日安排"),
    ("国务院办公厅关于印发“无废城市”建设试点工作方案的通知", "“无废城市”建设试点工作方案"),
    ("中共济南市莱芜区委关于巡视整改进展情况的通报", "巡视整改进展情况"),
])
def test_title_subjects(title, subject):
    assert subject in title_subjects(title)


def test_a_named_document_is_searched_for_what_follows_its_name(dev_engine):
    # The cover letter repeats the 办法's name and would win on it; the question asks when
    # the 办法 takes effect: the document is preferred and the rest of the question searched.
    from rag.retriever import Retriever
    named, asked = Retriever._named_documents("《个人所得税专项附加扣除暂行办法》从什么时候开始施行？",
                                              dev_engine.store.view())
    assert named == {"state-council-2018-iit-special-deductions-interim-measures-notice.html"}
    assert asked == "从什么时候开始施行？"
    # A name with too little left after it is searched whole.
    named, asked = Retriever._named_documents("个人所得税专项附加扣除暂行办法", dev_engine.store.view())
    assert asked == "个人所得税专项附加扣除暂行办法"
    bm25 = dev_engine.retriever
    bm25.config = bm25.config.replace(dense_weight=0.0)
    hits = bm25.search("《个人所得税专项附加扣除暂行办法》从什么时候开始施行？", k=3)
    assert "本办法自2019年1月1日起施行" in hits[0].paragraph.text


def test_a_table_row_is_found_with_its_headers(dev_engine):
    # The row carries its column headers and sits under the table's caption, so the
    # words of a question about one cell find it (keyword ranking: the fake embedder
    # cannot tell one row from another).
    bm25 = dev_engine.retriever
    bm25.config = bm25.config.replace(dense_weight=0.0)
    hits = bm25.search("扩大招生计划表里江西1995年招生人数是多少", k=1)
    assert hits[0].paragraph.text.startswith("省（市）：江西；1995年招生人数：70（实招45）")
    assert hits[0].paragraph.section[-1] == "附：内地西藏初中班（校）扩大招生计划表（单位：人）"


def test_no_chrome_or_addressee_line_ranks(dev_engine):
    for asked in ["国务院办公厅要求节假日期间各地区各部门做好哪些工作", "扫一扫在手机打开当前页", "相关链接"]:
        for h in dev_engine.search(asked, k=5):
            assert not h.paragraph.text.startswith(("各省、自治区、直辖市人民政府，国务院各部委", "扫一扫", "相关链接"))


def test_the_real_model_finds_an_annex_item(tmp_path):
    """With the real embedding model: an annex item of one report, asked in other words."""
    from rag import Config, Engine
    engine = Engine(Config(index=str(tmp_path / "index"), corpus=str(DEV)))
    engine.index([DEV / "inner-mongolia-2026-government-work-report.txt"], progress=False)
    hits = engine.search("内蒙古2026年民生实事里发放住房租赁补贴多少户，牵头单位是谁？", k=3)
    assert any("发放城镇住房保障家庭租赁补贴1.6万户" in h.paragraph.text for h in hits)
    assert hits[0].paragraph.section[0].startswith("附件")


def test_a_query_is_embedded_once(dev_engine):
    from rag.retriever import Retriever
    calls = []
    embedder = dev_engine.embedder

    class Counting:
        spec, dim = embedder.spec + "+counting", embedder.dim

        def encode(self, texts, is_query=False):
            calls.append(list(texts))
            return embedder.encode(texts, is_query)

    retriever = Retriever(dev_engine.store, Counting(), dev_engine.config)
    first = retriever.search("海南2026年城镇新增就业目标是多少？", k=3)
    again = retriever.search("海南2026年城镇新增就业目标是多少？", k=3)
    assert len(calls) == 1 and [h.paragraph.id for h in first] == [h.paragraph.id for h in again]


def test_indexing_warns_about_merged_cells_and_keeps_the_rest(tmp_path):
    import shutil
    folder = tmp_path / "docs"
    folder.mkdir()
    shutil.copy(DEV / "state-council-office-2018-public-holidays-2019-notice.html", folder)
    engine = fake_engine(tmp_path, corpus=folder)
    tibet = DEV / "state-council-office-1996-tibet-classes-expansion-forwarding-notice.html"
    report = engine.index([folder, tibet], progress=False)
    assert report.added == [tibet.name] and not report.skipped
    assert report.warnings == [f"{tibet.name}: merged cells spread over the rows and columns they cover"]
    assert len(engine.store.manifest().documents) == 2  # nothing already indexed lost
