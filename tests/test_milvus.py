"""The Milvus store on milvus-lite: the retrieval tests with ``store = "milvus"``,
incremental indexing, a crash mid-write, and milvus-lite's known differences from a
Milvus server, each pinned so that an upgrade that changes one is noticed."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="the Milvus store needs the [scale] extra")
pytest.importorskip("milvus_lite", reason="the Milvus store tests run on milvus-lite")

from pymilvus import DataType, Function, FunctionType, MilvusClient  # noqa: E402
from pymilvus.exceptions import MilvusException  # noqa: E402

from rag import Config, Engine  # noqa: E402
from rag.config import ConfigError  # noqa: E402
from rag.factory import make_store  # noqa: E402
from rag.milvus_store import JIEBA_ANALYZER, MilvusStore, collection_name  # noqa: E402
from rag.store import FileStore, IndexStateError, Manifest  # noqa: E402

from . import test_retrieval  # noqa: E402
from .conftest import REPO, write_doc  # noqa: E402

SAND = ["一是成立砂石资源整治工作专班,制定6项专项措施。", "二是设置7处联合检查点,严查非法运输车辆。"]
FLOOD = ["将防汛应急指挥部调整设在应急管理部门。", "新建防汛智慧监测点99处,实现实时预警。"]
FARM = ["获批农业产业联合体4家,培育龙头企业12家。"]


# -- the retrieval suite, with store = "milvus" -------------------------------------------
@pytest.fixture(scope="module")
def milvus_engine(sample_engine, tmp_path_factory):
    """The sample corpus in milvus-lite: the documents (and their vectors) of the FAISS
    index are written through ``MilvusStore.apply``, so the model does not embed them twice."""
    root = tmp_path_factory.mktemp("milvus")
    config = sample_engine.config.replace(store="milvus", milvus_uri=str(root / "milvus.db"),
                                          index=str(root / "index"))
    engine = Engine(config, embedder=sample_engine.embedder)
    assert isinstance(engine.store, MilvusStore)
    view = sample_engine.store.view()
    source = view.manifest
    engine.store.apply(Manifest(source.embedding, source.dim, source.chunking),
                       [view.document(d) for d in source.documents], [])
    yield engine
    engine.store.close()


RETRIEVAL_TESTS = sorted(name for name in dir(test_retrieval) if name.startswith("test_")
                         and "sample_engine" in getattr(test_retrieval, name).__code__.co_varnames
                         and "cli" not in name)


def test_every_retrieval_test_is_run_on_milvus():
    assert "test_sand_question_finds_the_sand_paragraph_first" in RETRIEVAL_TESTS
    assert len(RETRIEVAL_TESTS) >= 5


@pytest.mark.parametrize("name", RETRIEVAL_TESTS)
def test_retrieval_with_milvus(name, milvus_engine):
    getattr(test_retrieval, name)(milvus_engine)


def test_milvus_ranks_like_the_files(milvus_engine, sample_engine):
    for question in ["莱芜区如何整改砂石问题", "防汛应急指挥部设在哪个部门", "济南沿着母亲河种了多少树？"]:
        ours = [h.paragraph.id for h in milvus_engine.search(question, k=5)]
        files = [h.paragraph.id for h in sample_engine.search(question, k=5)]
        assert ours[0] == files[0]
        assert len(set(ours) & set(files)) >= 4  # BM25 tokenised by Milvus's jieba, not ours


def test_view_reads_what_was_written(milvus_engine, sample_engine):
    ours, files = milvus_engine.store.view(), sample_engine.store.view()
    assert len(ours) == len(files)
    assert ours.manifest.documents.keys() == files.manifest.documents.keys()
    doc_id = sorted(files.manifest.documents)[0]
    a, b = ours.document(doc_id), files.document(doc_id)
    assert [c.to_dict() for c in a.chunks] == [c.to_dict() for c in b.chunks]
    assert np.allclose(a.vectors, b.vectors)
    assert [p.to_dict() for p in a.paragraphs] == [p.to_dict() for p in b.paragraphs]
    assert len(ours.paragraphs()) == len(files.paragraphs())
    pid = a.paragraphs[3].id
    assert ours.paragraph(pid) == b.paragraphs[3]


def test_cli_search_with_store_milvus(milvus_engine):
    milvus_engine.store.close()  # a milvus-lite .db is open in one process at a time
    env = dict(os.environ, RAG_STORE="milvus", RAG_MILVUS_URI=milvus_engine.config.milvus_uri,
               RAG_INDEX=milvus_engine.config.index)
    out = subprocess.run([sys.executable, "-m", "rag.cli", "search", "莱芜区如何整改砂石问题", "--json"],
                         capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "砂石资源整治工作专班" in json.loads(out.stdout)[0]["text"]


def test_langchain_vectorstore_over_the_index(milvus_engine):
    store = milvus_engine.store.langchain_vectorstore(milvus_engine.embedder)
    docs = store.similarity_search("砂石资源整治工作专班", k=3)
    assert any("砂石资源整治工作专班" in d.page_content for d in docs)


# -- incremental indexing and crashes ------------------------------------------------------
@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    write_doc(folder, "sand.txt", SAND, title="砂石整治通报")
    write_doc(folder, "flood.txt", FLOOD, title="防汛整改通报")
    return folder


@pytest.fixture
def engine(tmp_path, corpus, fake_embedder):
    e = Engine(Config(index=str(tmp_path / "index"), corpus=str(corpus), store="milvus",
                      milvus_uri=str(tmp_path / "milvus.db")), embedder=fake_embedder)
    yield e
    e.store.close()


def _rows(store: MilvusStore) -> int:
    return store.client.query(store.chunks, filter="", output_fields=["count(*)"])[0]["count(*)"]


def test_add_change_remove(engine, corpus):
    first = engine.index(progress=False)
    assert sorted(first.added) == ["flood.txt", "sand.txt"] and first.embedded_chunks == 4
    assert engine.search("砂石整治专班", k=1)[0].paragraph.doc_id == "sand.txt"
    assert not engine.index(progress=False).changed

    write_doc(corpus, "farm.txt", FARM, title="农业整改通报")  # added
    write_doc(corpus, "sand.txt", SAND + ["三是成立嬴州资源公司,统一管理砂石资源。"], title="砂石整治通报")  # changed
    (corpus / "flood.txt").unlink()  # removed
    report = engine.index(progress=False)
    assert report.added == ["farm.txt"] and report.updated == ["sand.txt"] and report.removed == ["flood.txt"]
    assert report.reused_chunks == 2  # the unchanged paragraphs' vectors, read back from Milvus
    assert set(engine.manifest().documents) == {"farm.txt", "sand.txt"}
    assert engine.search("嬴州资源公司", k=1)[0].paragraph.text.startswith("三是成立嬴州资源公司")
    # the changed document's old chunks and the removed document are gone, not just hidden
    assert all(h.paragraph.doc_id != "flood.txt" for h in engine.search("防汛指挥部", k=10))
    assert _rows(engine.store) == 3 + 1 == len(engine.store.view())
    records = engine.store.query_all(engine.store.records, 'kind != "head"', ["doc_id"])
    assert {r["doc_id"] for r in records} == {"farm.txt", "sand.txt"}


def test_remove_a_document(engine):
    engine.index(progress=False)
    engine.remove(["flood.txt"])
    assert set(engine.manifest().documents) == {"sand.txt"}
    assert _rows(engine.store) == 2


def test_crash_mid_index_keeps_the_previous_documents(engine, corpus, monkeypatch):
    engine.index(progress=False)
    before = [h.to_dict() for h in engine.search("防汛指挥部", k=3)]
    write_doc(corpus, "farm.txt", FARM)
    write_doc(corpus, "flood.txt", FLOOD + ["防汛物资储备库建成3处。"], title="防汛整改通报")

    calls = []
    real_insert = MilvusStore._insert

    def crash(self, collection, rows):
        calls.append(collection)
        if collection == self.records:  # the chunks are in; the process dies before the commit
            raise RuntimeError("killed")
        real_insert(self, collection, rows)
    monkeypatch.setattr(MilvusStore, "_insert", crash)
    with pytest.raises(RuntimeError, match="killed"):
        engine.index(progress=False)
    monkeypatch.undo()
    assert calls == [engine.store.chunks, engine.store.records]
    assert _rows(engine.store) == 4 + 4  # the dead write's chunks are in the collection…

    engine.store.close()
    reopened = Engine(engine.config, embedder=engine.embedder)
    assert set(reopened.manifest().documents) == {"flood.txt", "sand.txt"}  # …but not in the index
    assert [h.to_dict() for h in reopened.search("防汛指挥部", k=3)] == before
    report = reopened.index(progress=False)  # the next writer removes them and writes its own
    assert report.added == ["farm.txt"] and report.updated == ["flood.txt"]
    assert _rows(reopened.store) == 2 + 3 + 1
    assert "储备库" in reopened.search("防汛物资储备库", k=1)[0].paragraph.text
    reopened.store.close()


def test_rebuild_replaces_everything(engine, corpus):
    engine.index(progress=False)
    (corpus / "flood.txt").unlink()
    engine.index(rebuild=True, progress=False)
    assert set(engine.manifest().documents) == {"sand.txt"} and _rows(engine.store) == 2


# -- configuration and errors --------------------------------------------------------------
def test_store_factory(tmp_path):
    assert isinstance(make_store(Config(index=str(tmp_path / "i"))), FileStore)
    store = make_store(Config(index=str(tmp_path / "my-index"), store="milvus",
                              milvus_uri=str(tmp_path / "m.db")))
    assert isinstance(store, MilvusStore) and store.chunks == collection_name("my-index") == "rag_my_index"
    server = make_store(Config(store="milvus", milvus_uri="http://127.0.0.1:19530"))
    assert server.uri == "http://127.0.0.1:19530" and server._client is None  # connects on first use
    with pytest.raises(ConfigError, match="unknown store 'qdrant'"):
        make_store(Config(store="qdrant"))
    with pytest.raises(IndexStateError, match="neither a server.*nor a milvus-lite file"):
        make_store(Config(store="milvus", milvus_uri=str(tmp_path / "folder")))


def test_unreachable_server_is_a_clear_error():
    store = MilvusStore("http://127.0.0.1:9", "rag_index")  # port 9: nothing listens there
    with pytest.raises(IndexStateError, match="cannot open Milvus at http://127.0.0.1:9"):
        store.exists()


def test_no_index_names_the_fix(tmp_path):
    store = MilvusStore(str(tmp_path / "m.db"), "rag_index")
    assert not store.exists()
    with pytest.raises(IndexStateError, match="no index in Milvus.*rag index"):
        store.view()
    store.close()


# -- milvus-lite's differences, pinned ------------------------------------------------------
@pytest.fixture
def client(tmp_path):
    c = MilvusClient(uri=str(tmp_path / "quirks.db"))
    yield c
    c.close()


def _collection(client, name="t", analyzer=JIEBA_ANALYZER, match=False):
    schema = client.create_schema(auto_id=False)
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field("text", DataType.VARCHAR, max_length=1000, enable_analyzer=True,
                     analyzer_params=analyzer, enable_match=match)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("dense", DataType.FLOAT_VECTOR, dim=2)
    schema.add_function(Function(name="bm25", function_type=FunctionType.BM25,
                                 input_field_names=["text"], output_field_names=["sparse"]))
    index = client.prepare_index_params()
    index.add_index("dense", index_type="FLAT", metric_type="IP")
    index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    client.create_collection(name, schema=schema, index_params=index)
    return name


def _bm25(client, name, query, limit=10):
    return client.search(name, data=[query], anns_field="sparse", limit=limit,
                         search_params={"metric_type": "BM25"}, output_fields=["pk"])[0]


def test_lite_jieba_analyzer_is_set_by_tokenizer_not_type(client):
    with pytest.raises(MilvusException, match="chinese"):
        _collection(client, "refused", analyzer={"type": "chinese"})
    _collection(client, "accepted", analyzer={"tokenizer": "jieba"})
    assert client.has_collection("accepted") and not client.has_collection("refused")


def test_lite_text_match_ignores_the_analyzer(client):
    name = _collection(client, match=True)
    client.insert(name, [{"pk": 1, "text": "成立砂石资源整治工作专班", "dense": [1, 0]}])
    # BM25 uses jieba: the word 砂石 finds the row…
    assert [h["pk"] for h in _bm25(client, name, "砂石")] == [1]
    # …text_match splits on \w+ whatever the field's analyzer: the whole run is one token.
    assert client.query(name, filter='text_match(text, "砂石")', output_fields=["pk"]) == []
    assert [r["pk"] for r in client.query(name, filter='text_match(text, "成立砂石资源整治工作专班")',
                                          output_fields=["pk"])] == [1]


def test_lite_bm25_scores_come_back_negated(client, tmp_path):
    name = _collection(client)
    client.insert(name, [{"pk": 1, "text": "砂石资源整治工作专班", "dense": [1, 0]},
                         {"pk": 2, "text": "砂石运输车辆检查点", "dense": [0, 1]},
                         {"pk": 3, "text": "防汛应急指挥部", "dense": [0, 1]}])
    hits = _bm25(client, name, "砂石 专班")
    assert [h["pk"] for h in hits] == [1, 2]  # best first…
    assert hits[0]["distance"] < hits[1]["distance"] < 0  # …with the most negative score


def test_store_keyword_scores_are_positive(milvus_engine):
    from rag.tokenize import tokenize
    hits = milvus_engine.store.view().keyword_search(tokenize("砂石资源整治工作专班"), 5)
    assert hits and all(score > 0 for _, score in hits)
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)


def test_lite_bm25_statistics_are_per_segment(client):
    name = _collection(client)
    # Segment 1: every row mentions 砂石; segment 2: one row of ten does. The same text
    # scores higher in segment 2, where 砂石 is rare: IDF is the segment's, not the index's.
    client.insert(name, [{"pk": i, "text": "砂石整治工作" if i else "砂石专班", "dense": [1, 0]} for i in range(10)])
    client.flush(name)
    client.insert(name, [{"pk": 100 + i, "text": "防汛指挥部门" if i else "砂石专班", "dense": [1, 0]}
                         for i in range(10)])
    client.flush(name)
    scores = {h["pk"]: -h["distance"] for h in _bm25(client, name, "砂石专班", limit=20)}
    assert scores[100] > 1.5 * scores[0]


def test_lite_filter_templates_are_not_parsed(client):
    name = _collection(client)
    client.insert(name, [{"pk": 1, "text": "砂石", "dense": [1, 0]}])
    with pytest.raises(MilvusException, match="unexpected character"):
        client.query(name, filter="pk in {ids}", filter_params={"ids": [1]}, output_fields=["pk"])
    assert client.query(name, filter="pk in [1]", output_fields=["pk"])[0]["pk"] == 1


def test_lite_db_is_open_in_one_process_at_a_time(tmp_path):
    store = MilvusStore(str(tmp_path / "one.db"), "rag_index")
    assert not store.exists()  # opens the .db
    probe = ("from rag.milvus_store import MilvusStore\nfrom rag.store import IndexStateError\n"
             f"try:\n    MilvusStore({str(tmp_path / 'one.db')!r}, 'rag_index').exists(); print('opened')\n"
             "except IndexStateError as e:\n    print('refused', e)\n")
    run = lambda: subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,  # noqa: E731
                                 cwd=REPO, timeout=120).stdout
    assert run().startswith("refused")
    store.close()
    assert run().startswith("opened")


def test_langchain_milvus_defaults_fail_on_lite_without_index_params(tmp_path, fake_embedder):
    from langchain_milvus import BM25BuiltInFunction, Milvus
    uri = str(tmp_path / "lc.db")
    common = dict(embedding_function=fake_embedder, connection_args={"uri": uri}, auto_id=True,
                  builtin_function=BM25BuiltInFunction(analyzer_params=JIEBA_ANALYZER),
                  vector_field=["dense", "sparse"])
    with pytest.raises(MilvusException, match="AUTOINDEX"):
        Milvus(collection_name="defaults", **common).add_texts(["砂石专班", "防汛"])
    given = Milvus(collection_name="given", **common,
                   index_params=[{"index_type": "FLAT", "metric_type": "IP"},
                                 {"index_type": "SPARSE_INVERTED_INDEX", "metric_type": "BM25"}],
                   search_params=[{"metric_type": "IP"}, {"metric_type": "BM25"}])
    given.add_texts(["砂石资源整治工作专班", "防汛应急指挥部"])
    assert given.similarity_search("砂石专班", k=1)[0].page_content == "砂石资源整治工作专班"

