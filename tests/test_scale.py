"""The files store at size: an HNSW graph above ``faiss_hnsw_above`` chunks (kept beside the
segment so a process start does not rebuild it), filtered searches on it, single queries on
one OpenMP thread; a view that keeps vectors and term counts memory-mapped and reads texts
for the hits; BM25 over the query terms' postings with MaxScore pruning, equal to scoring
every chunk."""
from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from rag import Config, Engine
from rag.chunking import Chunk
from rag.documents import Paragraph
from rag.store import FileView, FlatVectors
from rag.tokenize import tokenize

from .conftest import CORPUS, REPO


def _engine(tmp_path, fake_embedder, **config) -> Engine:
    engine = Engine(Config(index=str(tmp_path / "index"), corpus=str(CORPUS), **config), embedder=fake_embedder)
    engine.index(progress=False)
    return engine


def test_hnsw_above_the_threshold_finds_what_flat_finds(tmp_path, fake_embedder):
    flat = _engine(tmp_path / "flat", fake_embedder)
    hnsw = _engine(tmp_path / "hnsw", fake_embedder, faiss_hnsw_above=100, hnsw_m=16, hnsw_ef_search=64)
    flat_view, hnsw_view = flat.store.view(), hnsw.store.view()
    assert len(hnsw_view) > 100
    assert all(isinstance(s.dense, FlatVectors) for s in flat_view.segments)  # over the mapped vectors
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


def _questions(n: int = 40) -> list[str]:
    rows = [json.loads(line) for line in (REPO / "eval" / "questions.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip().startswith("{")]
    return [r["question"] for r in rows if r.get("question")][:n]


@pytest.mark.parametrize("whole_segment_above", [0.0, 0.125, 2.0])  # always, by default, never
def test_bm25_with_pruning_equals_scoring_every_chunk(tmp_path, fake_embedder, monkeypatch, whole_segment_above):
    """The top n of the pruned BM25 are exactly (positions, scores, order) the first n of the
    ranking of every chunk, filtered or not, whichever way a segment's candidates are scored;
    and the pruning does take effect (common terms are not walked)."""
    monkeypatch.setattr(FileView, "SCORE_WHOLE_SEGMENT_ABOVE", whole_segment_above)
    engine = _engine(tmp_path, fake_embedder)
    view = engine.store.view()
    generators_used, terms_seen = [], []
    real = view._bm25_candidates

    def spy(tokens, terms, generators, *args):
        generators_used.append(len(generators))
        terms_seen.append(len(terms))
        return real(tokens, terms, generators, *args)
    monkeypatch.setattr(view, "_bm25_candidates", spy)
    docs = sorted(view.manifest.documents)
    pruned = 0
    for question in _questions() + ["整改 整改 问题 砂石"]:  # a repeated word counts twice
        tokens = tokenize(question)
        for doc_ids in (None, {docs[0]}):
            everything = view.keyword_search(tokens, 10**6, doc_ids)
            for n in (1, 5, 20, 50):
                generators_used.clear()
                terms_seen.clear()
                assert view.keyword_search(tokens, n, doc_ids) == everything[:n], (question, n, doc_ids)
                pruned += bool(generators_used) and generators_used[-1] < terms_seen[-1]
    assert pruned > 20


def test_bm25_equals_bm25s_on_the_corpus(tmp_path, fake_embedder):
    import bm25s
    engine = _engine(tmp_path, fake_embedder)
    view = engine.store.view()
    positions = [p for d in sorted(view.manifest.documents)
                 for p in range(view._doc_range[d][1], view._doc_range[d][1] + view._doc_range[d][2])]
    reference = bm25s.BM25()
    reference.index([tokenize(view.chunk(p).indexed_text) for p in positions], show_progress=False)
    for question in _questions(15):
        tokens = tokenize(question)
        expected = reference.get_scores(tokens)
        got = dict(view.keyword_search(tokens, 10))
        top = np.argsort(-expected, kind="stable")[:10]
        assert np.allclose([got.get(positions[i], 0.0) for i in top], expected[top], atol=1e-5)


def test_a_view_keeps_no_texts_and_reads_what_the_files_hold(tmp_path, fake_embedder):
    """Vectors and term counts memory-mapped, chunks and paragraphs read on demand: what is
    read is exactly what the segment files hold, also after the segments were retired by
    later writes (a search in progress keeps its version)."""
    engine = _engine(tmp_path, fake_embedder)
    view = engine.store.view()
    expected_chunks, expected_paragraphs, expected_vectors = {}, {}, {}
    for segment, offset in zip(view.segments, view._offsets):
        assert isinstance(segment.vectors, np.memmap) and isinstance(segment.postings.rows, np.memmap)
        assert "chunks" not in vars(segment) and "paragraphs" not in vars(segment)  # never parsed whole
        lines = (segment.folder / "chunks.jsonl").read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            expected_chunks[offset + i] = Chunk(**json.loads(line))
        for line in (segment.folder / "paragraphs.jsonl").read_text(encoding="utf-8").splitlines():
            p = Paragraph.from_dict(json.loads(line))
            expected_paragraphs[p.id] = p
        vectors = np.load(segment.folder / "vectors.npy")
        for i in range(len(lines)):
            expected_vectors[offset + i] = vectors[i]
    segments = [s.folder for s in view.segments]
    engine.index(rebuild=True, progress=False)
    engine.index(rebuild=True, progress=False)  # the first view's segments are retired now
    assert not any(folder.exists() for folder in segments)
    assert [view.chunk(p) for p in sorted(expected_chunks)] == [expected_chunks[p] for p in sorted(expected_chunks)]
    assert all(view.paragraph(pid) == p for pid, p in expected_paragraphs.items())
    assert sorted(p.id for p in view.paragraphs()) == sorted(expected_paragraphs)
    for doc_id in view.manifest.documents:
        entry = view.document(doc_id)
        first, count = view._doc_range[doc_id][1:]
        assert entry.chunks == [expected_chunks[p] for p in range(first, first + count)]
        assert np.array_equal(entry.vectors, np.stack([expected_vectors[p] for p in range(first, first + count)]))
        assert [p.number for p in entry.paragraphs] == sorted(p.number for p in entry.paragraphs)
    with pytest.raises(KeyError):
        view.paragraph("no-such-document.txt#1")
    hits = view.dense_search(fake_embedder.encode(["砂石"], is_query=True)[0], 5)
    assert len(hits) == 5


def test_bm25_champion_lists_above_the_exact_size(tmp_path, fake_embedder, monkeypatch):
    """Above BM25_EXACT_MAX_CHUNKS, BM25 is approximate (champion lists): exactly the exact
    ranking when no list is cut, and near it when lists are short."""
    engine = _engine(tmp_path, fake_embedder)
    exact = engine.store.view()
    questions = _questions()
    expected = {q: exact.keyword_search(tokenize(q), 10) for q in questions}
    monkeypatch.setattr(FileView, "BM25_EXACT_MAX_CHUNKS", 0)
    for champions, at_least in ((10**6, 1.0), (20, 0.8)):
        monkeypatch.setattr(FileView, "CHAMPIONS", champions)
        view = FileView(engine.store.root, exact.gen, exact.record)
        assert view._champions is not None
        overlap = []
        for q in questions:
            got = view.keyword_search(tokenize(q), 10)
            if champions > 10**5:
                assert got == expected[q]
            else:
                assert all(score > 0 for _, score in got)
                truth = dict(expected[q])
                assert all(abs(truth[p] - score) < 1e-6 for p, score in got if p in truth)  # scores exact
            overlap.append(len({p for p, _ in got} & {p for p, _ in expected[q]}) / max(1, len(expected[q])))
        assert np.mean(overlap) >= at_least, (champions, np.mean(overlap))
