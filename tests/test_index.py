"""Incremental indexing, atomic writes and the error cases of `rag index`."""
from __future__ import annotations

import json

import numpy as np
import pytest

from embeddings import get_embedder
from rag import Config, Engine
from rag.indexer import NoDocuments, repair_index
from rag.store import FORMAT_VERSION, IndexStateError

from .conftest import write_doc

SAND = ["一是成立砂石资源整治工作专班,制定6项专项措施。", "二是设置7处联合检查点,严查非法运输车辆。"]
FLOOD = ["将防汛应急指挥部调整设在应急管理部门。", "新建防汛智慧监测点99处,实现实时预警。"]
FARM = ["获批农业产业联合体4家,培育龙头企业12家。"]


class CountingEmbedder:
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self, inner):
        self.inner, self.spec, self.dim, self.texts = inner, inner.spec, inner.dim, []

    def encode(self, texts, is_query=False):
        if not is_query:
            self.texts.extend(texts)
        return self.inner.encode(texts, is_query)


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    write_doc(folder, "sand.txt", SAND, title="砂石整治通报")
    write_doc(folder, "flood.txt", FLOOD, title="防汛整改通报")
    return folder


@pytest.fixture
def engine(tmp_path, corpus):
    e = Engine(Config(index=str(tmp_path / "index"), corpus=str(corpus)))
    e._embedder = CountingEmbedder(get_embedder("e5-small-q4"))
    return e


def test_add_change_remove_without_re_embedding(engine, corpus):
    first = engine.index(progress=False)
    assert sorted(first.added) == ["flood.txt", "sand.txt"] and first.embedded_chunks == 4
    assert engine.search("砂石整治专班", k=1)[0].paragraph.doc_id == "sand.txt"

    engine._embedder.texts.clear()
    again = engine.index(progress=False)
    assert again.unchanged == ["flood.txt", "sand.txt"] and not again.changed
    assert engine._embedder.texts == []  # a no-op re-index embeds nothing

    write_doc(corpus, "farm.txt", FARM, title="农业整改通报")  # added
    write_doc(corpus, "sand.txt", SAND + ["三是成立嬴州资源公司,统一管理砂石资源。"], title="砂石整治通报")  # changed
    (corpus / "flood.txt").unlink()  # removed
    report = engine.index(progress=False)
    assert report.added == ["farm.txt"] and report.updated == ["sand.txt"] and report.removed == ["flood.txt"]
    # Only the new paragraph and the new document were embedded; the two unchanged
    # paragraphs of sand.txt came from the vector cache.
    assert sorted(t.split("\n")[-1] for t in engine._embedder.texts) == sorted(
        ["三是成立嬴州资源公司,统一管理砂石资源。", FARM[0]])
    assert report.reused_chunks == 2
    assert set(engine.manifest().documents) == {"farm.txt", "sand.txt"}
    assert engine.search("嬴州资源公司", k=1)[0].paragraph.text.startswith("三是成立嬴州资源公司")
    assert all(h.paragraph.doc_id != "flood.txt" for h in engine.search("防汛指挥部", k=10))


def test_manifest_records_backend_and_hashes(engine):
    engine.index(progress=False)
    raw = engine.store.manifest().to_dict()
    assert raw["format_version"] == FORMAT_VERSION
    assert raw["embedding"] == {"backend": "e5-small-q4", "dim": 384}
    assert len(raw["documents"]["sand.txt"]["content_hash"]) == 64


def test_interrupted_write_keeps_the_old_index(engine, corpus, monkeypatch):
    engine.index(progress=False)
    before = [h.to_dict() for h in engine.search("防汛指挥部", k=3)]
    write_doc(corpus, "farm.txt", FARM)

    from rag.store import Postings

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(Postings, "save", crash)  # fails half-way through the new segment
    with pytest.raises(RuntimeError, match="disk full"):
        engine.index(progress=False)
    monkeypatch.undo()

    reopened = Engine(Config(index=engine.config.index, corpus=str(corpus)))
    assert set(reopened.manifest().documents) == {"flood.txt", "sand.txt"}
    assert [h.to_dict() for h in reopened.search("防汛指挥部", k=3)] == before
    assert not [p for p in reopened.store.root.rglob("tmp-*")]  # cleaned up


def test_unreadable_file_is_skipped_and_the_rest_indexed(engine, corpus):
    (corpus / "broken.txt").write_bytes(bytes(range(256)) * 10)
    report = engine.index(progress=False)
    assert [p for p, _ in report.skipped] == [str(corpus / "broken.txt")]
    assert "broken.txt" in report.skipped[0][1]
    assert sorted(report.added) == ["flood.txt", "sand.txt"]


def test_unreadable_new_version_keeps_the_indexed_one(engine, corpus):
    engine.index(progress=False)
    (corpus / "sand.txt").write_bytes(bytes(range(256)) * 10)
    report = engine.index(progress=False)
    assert report.skipped and not report.removed
    assert engine.search("砂石整治专班", k=1)[0].paragraph.doc_id == "sand.txt"


def test_empty_folder_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    e = Engine(Config(index=str(tmp_path / "index"), corpus=str(empty)))
    with pytest.raises(NoDocuments, match="no documents"):
        e.index(progress=False)
    with pytest.raises(NoDocuments, match="no such file"):
        e.index([tmp_path / "missing"], progress=False)


def _segment_files(engine):
    return sorted((engine.store.root / "segments").glob("seg-*/*"))


def test_damaged_index_names_the_file_and_the_repair(engine):
    engine.index(progress=False)
    before = [h.to_dict() for h in engine.search("防汛指挥部", k=3)]
    vectors = next(p for p in _segment_files(engine) if p.name == "vectors.npy")
    np.save(vectors, np.zeros((1, 384), dtype=np.float32))
    with pytest.raises(IndexStateError, match=f"damaged: {vectors}.*rag index --repair"):
        Engine(engine.config).search("防汛")
    repaired = Engine(engine.config)
    repaired._embedder = engine._embedder
    report = repair_index(repaired.store, repaired.embedder, repaired.config, progress=False)
    assert sorted(report.updated) == ["flood.txt", "sand.txt"] and not report.lost
    assert [h.to_dict() for h in Engine(engine.config).search("防汛指挥部", k=3)] == before


def test_garbled_manifest_falls_back_to_its_copy(engine, caplog):
    engine.index(progress=False)
    before = [h.to_dict() for h in engine.search("防汛指挥部", k=3)]
    gen = engine.store.root / (engine.store.root / "CURRENT").read_text().strip()
    (gen / "manifest.json").write_text("{not json")
    assert [h.to_dict() for h in Engine(engine.config).search("防汛指挥部", k=3)] == before
    assert "manifest.json is unreadable" in caplog.text and "manifest.copy.json" in caplog.text
    (gen / "manifest.copy.json").write_text("{}")
    with pytest.raises(IndexStateError, match="manifest.json.*manifest.copy.json.*--repair"):
        Engine(engine.config).search("防汛")


def test_empty_current_never_rebuilds_from_the_corpus(engine, corpus, tmp_path):
    engine.index(progress=False)
    (corpus / "sand.txt").unlink()  # the corpus now differs from the index
    (engine.store.root / "CURRENT").write_text("")
    fresh = Engine(engine.config)
    assert {h.paragraph.doc_id for h in fresh.search("砂石整治专班", k=5)} >= {"sand.txt"}
    assert (engine.store.root / "CURRENT").read_text() == ""  # a search writes nothing


def test_repair_reads_the_recorded_paths_not_the_corpus(engine, corpus, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    write_doc(other, "farm.txt", FARM, title="农业整改通报")
    engine.index(progress=False)
    engine.index([other], progress=False)
    for seg in (engine.store.root / "segments").glob("seg-*"):
        (seg / "chunks.jsonl").write_text("garbage\n")
    empty_corpus = tmp_path / "empty"
    empty_corpus.mkdir()
    e = Engine(engine.config.replace(corpus=str(empty_corpus)))
    e._embedder = engine._embedder
    with pytest.raises(IndexStateError, match="chunks.jsonl"):
        e.search("农业")
    report = repair_index(e.store, e.embedder, e.config, progress=False)
    assert sorted(report.updated) == ["farm.txt", "flood.txt", "sand.txt"]
    assert set(Engine(e.config).manifest().documents) == {"farm.txt", "flood.txt", "sand.txt"}


def test_older_format_names_the_fix(engine):
    engine.index(progress=False)
    gen = engine.store.root / (engine.store.root / "CURRENT").read_text().strip()
    for name in ("manifest.json", "manifest.copy.json"):
        raw = json.loads((gen / name).read_text())
        raw["format_version"] = 0
        raw.pop("checksum")  # as a format-1 manifest, which had none
        (gen / name).write_text(json.dumps(raw))
    with pytest.raises(IndexStateError, match="format 0.*rag index --repair"):
        Engine(engine.config).search("防汛")


def test_changed_embedding_backend_names_the_fix(engine, minilm_path):
    engine.index(progress=False)
    other = Engine(engine.config.replace(embedding=f"sentence-transformers:{minilm_path}"))
    with pytest.raises(IndexStateError, match="built with embedding backend 'e5-small-q4'.*--repair"):
        other.search("防汛")


def test_remove_a_document(engine):
    engine.index(progress=False)
    engine.remove(["flood.txt"])
    assert set(engine.manifest().documents) == {"sand.txt"}
    with pytest.raises(KeyError):
        engine.remove(["nope.txt"])
