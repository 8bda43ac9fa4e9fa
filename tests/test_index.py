"""Incremental indexing, atomic writes and the error cases of `rag index`."""
from __future__ import annotations

import json
from pathlib import Path

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


# -- the command line: remove, documents, limits (fast: the hash-test embedder) ------------
@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    from rag import cli
    monkeypatch.setenv("RAG_EMBEDDING", "hash-test")
    monkeypatch.setenv("RAG_INDEX", str(tmp_path / "index"))
    monkeypatch.setenv("RAG_CORPUS", str(tmp_path / "no-corpus"))

    def run(capsys, *argv):
        capsys.readouterr()
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err
    return run


def test_rag_remove_a_file_indexed_on_its_own(cli_env, tmp_path, capsys):
    folder = tmp_path / "docs"
    folder.mkdir()
    write_doc(folder, "sand.txt", SAND, title="砂石整治通报")
    alone = write_doc(tmp_path, "farm.txt", FARM, title="农业整改通报")
    assert cli_env(capsys, "index", str(folder))[0] == 0
    assert cli_env(capsys, "index", str(alone))[0] == 0
    alone.unlink()  # deleted: a folder re-index would not notice, it was indexed on its own
    code, out, _ = cli_env(capsys, "search", "农业产业联合体", "--json", "--k", "1")
    assert json.loads(out)[0]["doc_id"] == "farm.txt"
    code, out, err = cli_env(capsys, "remove", str(alone))
    assert code == 0 and "farm.txt" in out
    code, out, _ = cli_env(capsys, "search", "农业产业联合体", "--json", "--k", "5")
    assert all(h["doc_id"] != "farm.txt" for h in json.loads(out))
    code, out, err = cli_env(capsys, "remove", "farm.txt")
    assert code == 1 and "not in the index: farm.txt" in err


def test_rag_documents_lists_paths_hashes_and_counts(cli_env, corpus, capsys):
    assert cli_env(capsys, "index", str(corpus))[0] == 0
    code, out, _ = cli_env(capsys, "documents", "--json")
    rows = {r["doc_id"]: r for r in json.loads(out)}
    assert set(rows) == {"flood.txt", "sand.txt"}
    assert rows["sand.txt"]["paragraphs"] == 2 and rows["sand.txt"]["chunks"] == 2
    assert rows["sand.txt"]["path"] == str(corpus / "sand.txt") and len(rows["sand.txt"]["content_hash"]) == 64
    code, out, _ = cli_env(capsys, "documents")
    assert code == 0 and "2 documents" in out and str(corpus / "flood.txt") in out


def test_limits_are_usage_errors(cli_env, corpus, capsys):
    assert cli_env(capsys, "index", str(corpus))[0] == 0
    for k in ("0", "-1", "51"):
        code, _, err = cli_env(capsys, "search", "防汛", "--k", k)
        assert code == 2 and "from 1 to 50" in err and "Traceback" not in err
    code, _, err = cli_env(capsys, "search", "问" * 501)
    assert code == 2 and "501 characters" in err
    assert cli_env(capsys, "search", "问" * 500)[0] == 0
    undecodable = b"\xff\xfe\xe9".decode("utf-8", "surrogateescape")  # what Python makes of bad argv bytes
    code, _, err = cli_env(capsys, "search", undecodable)
    assert code == 2 and "not valid UTF-8" in err


def test_oversized_file_is_skipped(cli_env, corpus, capsys, monkeypatch):
    monkeypatch.setenv("RAG_MAX_FILE_BYTES", "400")  # the two small documents fit
    write_doc(corpus, "big.txt", ["很长的段落。" * 50])
    code, out, err = cli_env(capsys, "index", str(corpus))
    assert code == 0 and "2 added" in out and "big.txt" in err and "max_file_bytes" in err


def test_terminal_escapes_in_documents_are_not_printed(cli_env, tmp_path, capsys):
    folder = tmp_path / "docs"
    folder.mkdir()
    write_doc(folder, "evil.txt", ["充电桩\x1b[2J\x1b]0;pwned\x07建成120个\u202e。"], title="标题\x1b[31m")
    assert cli_env(capsys, "index", str(folder))[0] == 0
    code, out, _ = cli_env(capsys, "search", "充电桩")
    assert code == 0 and "充电桩建成120个。" in out and "\x1b" not in out and "\u202e" not in out


def test_embedder_truncates_at_its_window():
    from embeddings.base import truncate_to_window
    count = len  # one token a character
    assert truncate_to_window(["短句", "长" * 600], count, 512) == ["短句", "长" * 512]
    e5 = get_embedder("e5-small-q4")
    long = "砂石资源整治工作专班。" * 300
    assert e5._model.token_count(long) > 512
    assert np.allclose(e5.encode([long]), e5.encode(truncate_to_window([long], e5._model.token_count, 512)))


# -- segments: writes proportional to the change, BM25 across segments, compaction ---------
def _hash_engine(tmp_path, name="index", **changes):
    return Engine(Config(index=str(tmp_path / name), corpus=str(tmp_path / "no-corpus"),
                         embedding="hash-test", **changes))


def _many_docs(folder, n):
    folder.mkdir(exist_ok=True)
    return [write_doc(folder, f"d{i:02d}.txt", [f"第{i}项：新建防汛监测点{i}处,整治砂石场{i % 3}个。",
                                                 f"完成黑臭水体整治{i}条。"], title=f"通报{i}")
            for i in range(n)]


def test_adding_a_document_writes_only_that_document(tmp_path):
    engine = _hash_engine(tmp_path)
    _many_docs(tmp_path / "a", 6)
    engine.index([tmp_path / "a"], progress=False)
    before = {p: p.stat().st_mtime_ns for p in (engine.store.root / "segments").rglob("*") if p.is_file()}
    engine.index([write_doc(tmp_path, "new.txt", FARM, title="农业整改通报")], progress=False)
    after = {p: p.stat().st_mtime_ns for p in (engine.store.root / "segments").rglob("*") if p.is_file()}
    assert all(after[p] == t for p, t in before.items())  # nothing rewritten
    new_files = set(after) - set(before)
    assert len({p.parent for p in new_files}) == 1  # one new segment
    chunks = next(p for p in new_files if p.name == "chunks.jsonl").read_text().splitlines()
    assert [json.loads(c)["doc_id"] for c in chunks] == ["new.txt"]


def test_bm25_across_segments_equals_one_bm25s_index(tmp_path):
    """Statistics over the live chunks of all segments: the scores of bm25s over exactly
    those chunks, after adds in several writes and a replaced document."""
    import bm25s

    from rag.tokenize import tokenize
    engine = _hash_engine(tmp_path)
    docs = _many_docs(tmp_path / "a", 5)
    engine.index(docs[:2], progress=False)
    for doc in docs[2:]:  # one segment each
        engine.index([doc], progress=False)
    write_doc(tmp_path / "a", "d01.txt", ["改写后的段落：新建污水管网41公里。"], title="通报1")
    engine.index([tmp_path / "a"], progress=False)  # d01 replaced: tombstones in the first segment
    view = engine.store.view()
    assert len(view.segments) == 5 and len(view) == 9 and sum(s.size for s in view.segments) == 11
    positions = [p for d in sorted(view.manifest.documents)
                 for p in range(view._doc_range[d][1], view._doc_range[d][1] + view._doc_range[d][2])]
    reference = bm25s.BM25()
    reference.index([tokenize(view.chunk(p).indexed_text) for p in positions], show_progress=False)
    for query in ("新建防汛监测点", "黑臭水体整治", "污水管网", "砂石"):
        tokens = tokenize(query)
        expected = reference.get_scores(tokens)
        got = dict(view.keyword_search(tokens, 100))
        assert np.allclose([got.get(p, 0.0) for p in positions], expected, atol=1e-5)


def test_compaction_keeps_results_and_bounds_segments(tmp_path):
    engine = _hash_engine(tmp_path, max_segments=3)
    flat = _hash_engine(tmp_path, name="flat")
    docs = _many_docs(tmp_path / "a", 7)
    for doc in docs:
        engine.index([doc], progress=False)
    engine.remove(["d03.txt"])
    flat.index([tmp_path / "a"], progress=False)
    flat.remove(["d03.txt"])
    assert len(engine.store.view().segments) <= 3
    assert len(list((engine.store.root / "segments").iterdir())) <= 6  # retired ones deleted
    for query in ("新建防汛监测点5处", "黑臭水体整治", "砂石场"):
        assert [h.to_dict() for h in engine.search(query, k=5)] == [h.to_dict() for h in flat.search(query, k=5)]


def test_a_damaged_segment_is_not_carried_into_the_next_write(tmp_path):
    engine = _hash_engine(tmp_path)
    _many_docs(tmp_path / "a", 2)
    engine.index([tmp_path / "a"], progress=False)
    vectors = next((engine.store.root / "segments").rglob("vectors.npy"))
    data = bytearray(vectors.read_bytes())
    data[-8:] = b"\x00" * 8  # same size, different vector
    vectors.write_bytes(bytes(data))
    with pytest.raises(IndexStateError, match=f"{vectors}.*checksum.*--repair"):
        _hash_engine(tmp_path).index([write_doc(tmp_path, "new.txt", FARM)], progress=False)


def test_readers_never_fail_while_writes_land(tmp_path):
    """Searches during a series of quick writes (each retiring the generation before the
    previous one) always see a whole index, never an error."""
    import threading
    writer = _hash_engine(tmp_path)
    docs = _many_docs(tmp_path / "a", 8)
    writer.index(docs[:1], progress=False)
    errors, seen = [], []
    done = threading.Event()

    def read():
        while not done.is_set():
            try:
                reader = _hash_engine(tmp_path)  # a fresh store: it loads whatever is current
                seen.append(len(reader.search("黑臭水体整治", k=50)))
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(exc)
    thread = threading.Thread(target=read)
    thread.start()
    try:
        for doc in docs[1:]:
            writer.index([doc], progress=False)
    finally:
        done.set()
        thread.join()
    assert not errors and seen and all(n >= 1 for n in seen)


def test_a_full_disk_is_a_clear_error_and_changes_nothing(cli_env, corpus, tmp_path, capsys, monkeypatch):
    assert cli_env(capsys, "index", str(corpus))[0] == 0
    before = cli_env(capsys, "search", "防汛指挥部", "--json")[1]
    write_doc(corpus, "farm.txt", FARM, title="农业整改通报")
    import rag.store

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(rag.store.os, "rename", full)
    code, out, err = cli_env(capsys, "index", str(corpus))
    assert code == 1 and "No space left on device" in err and "unchanged" in err
    monkeypatch.undo()
    # undo also dropped the fixture's environment: set it again
    monkeypatch.setenv("RAG_EMBEDDING", "hash-test")
    monkeypatch.setenv("RAG_INDEX", str(tmp_path / "index"))
    assert cli_env(capsys, "search", "防汛指挥部", "--json")[1] == before
    code, out, err = cli_env(capsys, "index", str(corpus))
    assert code == 0 and "1 added" in out
    assert not list((tmp_path / "index").rglob("tmp-*"))


def test_updating_a_document_reads_only_that_document(tmp_path):
    engine = _hash_engine(tmp_path)
    _many_docs(tmp_path / "a", 6)
    engine.index([tmp_path / "a"], progress=False)
    write_doc(tmp_path / "a", "d02.txt", ["第2项：新建防汛监测点2处,整治砂石场2个。", "新增一段。"], title="通报2")
    fresh = _hash_engine(tmp_path)
    report = fresh.index([tmp_path / "a"], progress=False)
    assert report.updated == ["d02.txt"] and report.reused_chunks == 1 and report.embedded_chunks == 1
    assert fresh.store._view is None  # the index was not loaded to reuse d02's vectors
    entry = fresh.store.documents({"d02.txt", "d04.txt", "nope.txt"})
    assert set(entry) == {"d02.txt", "d04.txt"}
    assert [p.text for p in entry["d02.txt"].paragraphs][-1] == "新增一段。"
    assert np.allclose(entry["d04.txt"].vectors, fresh.store.view().document("d04.txt").vectors)


def test_rag_index_prints_what_a_reader_could_not_read_as_laid_out(cli_env, capsys):
    tibet = Path(__file__).resolve().parents[1] / "eval" / "corpus-dev" / \
        "state-council-office-1996-tibet-classes-expansion-forwarding-notice.html"
    code, out, err = cli_env(capsys, "index", str(tibet))
    assert code == 0 and "1 added" in out
    assert f"rag: warning: {tibet.name}: merged cells spread over the rows and columns they cover" in err
