"""Hybrid retrieval on the sample corpus, the LangChain retriever, and `rag search`."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rag.retriever import LangChainRetriever, QueryError

from .conftest import JINAN, LAIWU, REPO


def test_sand_question_finds_the_sand_paragraph_first(sample_engine):
    hits = sample_engine.search("莱芜区如何整改砂石问题", k=5)
    assert "砂石资源整治工作专班" in hits[0].paragraph.text
    assert hits[0].paragraph.section[-1] == "(18)铁腕打击、综合治理私挖滥采砂石不力"
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    assert len({h.paragraph.id for h in hits}) == 5  # chunks collapsed to paragraphs


def test_filter_by_document(sample_engine):
    hits = sample_engine.search("防汛应急指挥部设在哪个部门", k=5, doc_ids=[LAIWU])
    assert hits and all(h.paragraph.doc_id == LAIWU for h in hits)
    hits = sample_engine.search("防汛应急指挥部设在哪个部门", k=5, doc_ids=[JINAN])
    assert "应急管理部门" in hits[0].paragraph.text


def test_bm25_only_and_dense_only_rankings(sample_engine):
    from rag.retriever import Retriever
    for change in ({"dense_weight": 0.0}, {"bm25_weight": 0.0}):
        r = Retriever(sample_engine.store, sample_engine.embedder, sample_engine.config.replace(**change))
        assert "砂石资源整治工作专班" in r.search("砂石资源整治工作专班由谁组成", k=3)[0].paragraph.text


def test_a_comparison_of_places_is_searched_in_each_places_documents(sample_engine):
    # Both reports hold paragraphs on the leading group; a comparison gets both sides,
    # the better first, rather than five paragraphs of one report.
    hits = sample_engine.search("莱芜区和济南市的巡视整改领导小组分别由谁任组长？", k=4)
    assert [h.paragraph.doc_id for h in hits].count(LAIWU) == 2
    assert [h.paragraph.doc_id for h in hits].count(JINAN) == 2
    assert hits[0].paragraph.doc_id != hits[1].paragraph.doc_id  # each side's best comes first
    # a bare 济南 is read as the city: its report comes first
    assert sample_engine.search("济南沿着母亲河种了多少树？", k=1)[0].paragraph.doc_id == JINAN


def test_empty_query_is_refused(sample_engine):
    for query in ["", "   ", "\n\t"]:
        with pytest.raises(QueryError, match="empty"):
            sample_engine.search(query)


def test_langchain_retriever(sample_engine):
    lc = LangChainRetriever(retriever=sample_engine.retriever, k=3)
    docs = lc.invoke("莱芜区如何整改砂石问题")
    assert len(docs) == 3 and "砂石资源整治工作专班" in docs[0].page_content
    assert docs[0].metadata["doc_id"] == LAIWU and docs[0].metadata["paragraph"] >= 1


def _rag(*args, env=None):
    return subprocess.run([sys.executable, "-m", "rag.cli", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=600)


def test_cli_search_json(sample_engine):
    out = _rag("search", "莱芜区如何整改砂石问题", "--json", "--index", sample_engine.config.index)
    assert out.returncode == 0, out.stderr
    hits = json.loads(out.stdout)
    assert set(hits[0]) >= {"rank", "score", "doc_id", "doc_title", "section", "paragraph", "text"}
    assert "砂石资源整治工作专班" in hits[0]["text"] and hits[0]["rank"] == 1
    assert hits[0]["doc_title"] == "中共济南市莱芜区委关于巡视整改进展情况的通报"


def test_cli_empty_query_exits_2(sample_engine):
    out = _rag("search", "  ", "--index", sample_engine.config.index)
    assert out.returncode == 2 and "empty" in out.stderr


def test_cli_first_search_builds_the_index(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("关于砂石的通报\n成立砂石资源整治工作专班,设置7处联合检查点。\n", encoding="utf-8")
    out = _rag("search", "砂石专班", "--json", "--index", str(tmp_path / "idx"), "--corpus", str(folder))
    assert out.returncode == 0, out.stderr
    assert "embedding" in out.stderr  # the progress bar of the build
    assert json.loads(out.stdout)[0]["doc_id"] == "a.txt"


def test_cli_index_reports_skipped_files(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("关于砂石的通报\n成立砂石资源整治工作专班。\n", encoding="utf-8")
    (folder / "bad.docx").write_bytes(b"not a docx")
    out = _rag("index", str(folder), "--index", str(tmp_path / "idx"))
    assert out.returncode == 0, out.stderr
    assert "skipped" in out.stderr and "bad.docx" in out.stderr
    assert "1 added" in out.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    out = _rag("index", str(empty), "--index", str(tmp_path / "idx2"))
    assert out.returncode == 1 and "no documents" in out.stderr
