"""FAISS at size: an HNSW graph above ``faiss_hnsw_above`` chunks (kept beside the segment
so a process start does not rebuild it), filtered searches on it, and single queries on
one OpenMP thread."""
from __future__ import annotations

import faiss
import numpy as np

from rag import Config, Engine

from .conftest import CORPUS


def _engine(tmp_path, fake_embedder, **config) -> Engine:
    engine = Engine(Config(index=str(tmp_path / "index"), corpus=str(CORPUS), **config), embedder=fake_embedder)
    engine.index(progress=False)
    return engine


def test_hnsw_above_the_threshold_finds_what_flat_finds(tmp_path, fake_embedder):
    flat = _engine(tmp_path / "flat", fake_embedder)
    hnsw = _engine(tmp_path / "hnsw", fake_embedder, faiss_hnsw_above=100, hnsw_m=16, hnsw_ef_search=64)
    flat_view, hnsw_view = flat.store.view(), hnsw.store.view()
    assert len(hnsw_view) > 100
    assert all(isinstance(s.dense, faiss.IndexFlatIP) for s in flat_view.segments)
    assert all(isinstance(s.dense, faiss.IndexHNSWFlat) for s in hnsw_view.segments)
    assert all(s.dense.hnsw.efSearch == 64 for s in hnsw_view.segments)
    found = []
    for question in ["莱芜区如何整改砂石问题", "防汛应急指挥部设在哪个部门", "济南沿着母亲河种了多少树"]:
        vector = fake_embedder.encode([question], is_query=True)[0]
        a = {p for p, _ in flat_view.dense_search(vector, 10)}
        b = {p for p, _ in hnsw_view.dense_search(vector, 10)}
        found.append(len(a & b) / 10)
        assert hnsw.search(question, k=1)[0].paragraph.id == flat.search(question, k=1)[0].paragraph.id
    assert np.mean(found) >= 0.9


def test_hnsw_graph_is_kept_with_its_segment(tmp_path, fake_embedder):
    engine = _engine(tmp_path, fake_embedder, faiss_hnsw_above=100, hnsw_m=16)
    view = engine.store.view()  # the first open builds the graph and keeps it
    graphs = list((engine.store.root / "segments").glob("seg-*/dense-hnsw-*.faiss"))
    assert graphs and len(graphs) == len(view.segments)
    before = graphs[0].stat().st_mtime_ns
    reopened = Engine(engine.config, embedder=fake_embedder)  # a new process: read, not rebuilt
    assert isinstance(reopened.store.view().segments[0].dense, faiss.IndexHNSWFlat)
    assert graphs[0].stat().st_mtime_ns == before
    graphs[0].write_bytes(b"not a graph")  # damaged: rebuilt from the segment's vectors
    again = Engine(engine.config, embedder=fake_embedder)
    assert "砂石" in again.search("莱芜区如何整改砂石问题", k=1)[0].paragraph.text


def test_filtered_search_on_hnsw(tmp_path, fake_embedder):
    engine = _engine(tmp_path, fake_embedder, faiss_hnsw_above=100)
    docs = sorted(engine.manifest().documents)
    for doc in docs:
        hits = engine.search("防汛应急指挥部设在哪个部门", k=5, doc_ids=[doc])
        assert hits and all(h.paragraph.doc_id == doc for h in hits)


def test_a_single_query_runs_faiss_on_one_thread(tmp_path, fake_embedder, monkeypatch):
    engine = _engine(tmp_path, fake_embedder)
    view = engine.store.view()
    seen = []
    segment = view.segments[0]
    real = segment.dense.search

    def spy(*args, **kwargs):
        seen.append(faiss.omp_get_max_threads())
        return real(*args, **kwargs)
    monkeypatch.setattr(segment, "dense", type("Spy", (), {"search": staticmethod(spy),
                                                           "ntotal": segment.dense.ntotal})())
    faiss.omp_set_num_threads(2)
    view.dense_search(fake_embedder.encode(["砂石"], is_query=True)[0], 5)
    assert seen == [1]
    assert faiss.omp_get_max_threads() == 2  # restored for batch work (index builds)
