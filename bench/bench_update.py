"""Adding one document to an index of 10^5 chunks: time and peak memory of the write.

    .venv/bin/python bench/bench_update.py                      # this checkout
    .venv/bin/python bench/bench_update.py --code /tmp/old      # another checkout, e.g. the
        # commit before segments: git archive 0ae311c^ rag embeddings eval | tar -x -C /tmp/old

How the large index is made: the sample corpus (``--source``) is indexed once for real
with the configured embedder (cached in .rag/bench-cache/). Its documents are then copied
until the index holds ``--chunks`` chunks; each copy's vectors are the real vectors plus
Gaussian noise (sigma ``--noise`` per dimension), renormalised to unit length, so they are
distributed like real embeddings without an hour of embedding. The copy is written in one
``Store.apply`` (tokenizing repeated texts once: setup, not measured).

What is measured, in a fresh process per code version, with the embedder loaded and
warmed first: ``engine.index([one new file])`` end to end (lock, plan, embedding the new
document's chunks for real, writing, commit) and the peak resident memory during it above
the process's memory before it (Linux VmHWM, reset just before). Then the first search
after the write (which loads the index) is timed too.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".rag" / "bench-cache"
NEW_DOC = ("新能源通报\n发布日期:2024-01-02\n"
           "一是新建光伏电站3座,年发电量1.2亿千瓦时。\n二是建成充电桩120个,覆盖全部乡镇。\n"
           "三是完成老旧小区改造35个,惠及居民1.2万户。\n")


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _du_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def phase_source(args) -> None:
    """Index the source corpus for real (this checkout) and dump its documents."""
    from rag import Config, Engine
    index = CACHE / "source-index"
    engine = Engine(Config(index=str(index), corpus=args.source, embedding=args.embedding))
    engine.index([args.source], progress=False)
    view = engine.store.view()
    docs = []
    import numpy as np
    vectors = []
    for doc_id in sorted(view.manifest.documents):
        entry = view.document(doc_id)
        docs.append({"meta": entry.meta, "paragraphs": [p.to_dict() for p in entry.paragraphs],
                     "chunks": [c.to_dict() for c in entry.chunks]})
        vectors.append(entry.vectors)
    (CACHE / "source.json").write_text(json.dumps({"embedding": args.embedding, "dim": view.manifest.dim,
                                                   "chunking": view.manifest.chunking, "docs": docs},
                                                  ensure_ascii=False))
    np.save(CACHE / "source-vectors.npy", np.concatenate(vectors))


def phase_build(args) -> dict:
    """Write an index of about args.chunks chunks derived from the source documents."""
    import numpy as np

    import rag.store
    from rag.chunking import Chunk
    from rag.documents import Paragraph
    from rag.store import DocumentEntry, FileStore, Manifest
    source = json.loads((CACHE / "source.json").read_text())
    vectors = np.load(CACHE / "source-vectors.npy")
    rng = np.random.default_rng(0)
    rag.store.tokenize = functools.lru_cache(maxsize=None)(rag.store.tokenize)  # setup only
    entries, total, copy = [], 0, 0
    while total < args.chunks:
        offset = 0
        for doc in source["docs"]:
            n = len(doc["chunks"])
            stem, dot, suffix = doc["meta"]["doc_id"].rpartition(".")
            doc_id = f"{stem}-{copy:04d}.{suffix}"
            meta = dict(doc["meta"], doc_id=doc_id, path=f"/nonexistent/bench/{doc_id}")
            paragraphs = [Paragraph.from_dict(dict(p, doc_id=doc_id)) for p in doc["paragraphs"]]
            chunks = [Chunk(**dict(c, doc_id=doc_id, paragraph_id=f"{doc_id}#{c['paragraph_id'].split('#')[1]}"))
                      for c in doc["chunks"]]
            noisy = vectors[offset:offset + n] + rng.normal(0, args.noise, (n, vectors.shape[1]))
            noisy = (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)
            entries.append(DocumentEntry(meta, paragraphs, chunks, noisy))
            offset += n
            total += n
        copy += 1
    store = FileStore(args.index)
    t = time.perf_counter()
    store.apply(Manifest(source["embedding"], source["dim"], source["chunking"]), entries, [], replace_all=True)
    return {"chunks": total, "documents": len(entries), "build_s": round(time.perf_counter() - t, 1),
            "index_mib": round(_du_mib(Path(args.index)), 1)}


def phase_add(args) -> dict:
    """Add one new document to the index; time and peak memory above the start."""
    from rag import Config, Engine
    engine = Engine(Config(index=args.index, corpus=args.index, embedding=args.embedding))
    from rag.documents import load_document
    engine.embedder.encode(["预热"])  # the model is loaded and warm before measuring,
    doc = Path(args.index).parent / "new-document.txt"
    doc.write_text(NEW_DOC, encoding="utf-8")
    load_document(doc)  # and so are the readers' one-time set-up (jieba dictionaries)
    store_s = []
    apply = type(engine.store).apply

    def timed_apply(self, *a, **kw):  # the store's share: planning the write, writing, commit
        t = time.perf_counter()
        try:
            return apply(self, *a, **kw)
        finally:
            store_s.append(time.perf_counter() - t)
    type(engine.store).apply = timed_apply
    embed = type(engine.embedder).encode
    embed_s = []

    def timed_encode(self, *a, **kw):
        t = time.perf_counter()
        try:
            return embed(self, *a, **kw)
        finally:
            embed_s.append(time.perf_counter() - t)
    type(engine.embedder).encode = timed_encode
    size_before = _du_mib(Path(args.index))
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    rss_before = _rss_kib("VmRSS")
    t = time.perf_counter()
    report = engine.index([doc], progress=False)
    add_s = time.perf_counter() - t
    peak = _rss_kib("VmHWM")
    embedding_s = sum(embed_s)
    t = time.perf_counter()
    hits = Engine(Config(index=args.index, corpus=args.index, embedding=args.embedding)).search("光伏电站", k=1)
    search_s = time.perf_counter() - t
    assert report.added == ["new-document.txt"] and hits[0].paragraph.doc_id == "new-document.txt"
    return {"add_s": round(add_s, 2), "store_write_s": round(sum(store_s), 2),
            "embedding_s": round(embedding_s, 2),
            "embedded_chunks": report.embedded_chunks,
            "peak_above_start_mib": round((peak - rss_before) / 1024, 1),
            "rss_before_mib": round(rss_before / 1024, 1), "index_mib_before": round(size_before, 1),
            "index_mib_after": round(_du_mib(Path(args.index)), 1),
            "first_search_after_s": round(search_s, 2)}


def _run_phase(phase: str, code: Path, extra: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code))
    out = subprocess.run([sys.executable, __file__, "--phase", phase, "--code", str(code), *extra],
                         env=env, cwd=code, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{phase} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1]) if phase != "source" else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--source", default=str(REPO / "data" / "corpus"))
    parser.add_argument("--embedding", default="e5-small-q4")
    parser.add_argument("--noise", type=float, default=0.01, help="per-dimension sigma of the noise")
    parser.add_argument("--code", default=str(REPO), help="checkout whose rag/ is measured")
    parser.add_argument("--phase", choices=["source", "build", "add"], help=argparse.SUPPRESS)
    parser.add_argument("--index", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        sys.path.insert(0, args.code)
        result = {"source": phase_source, "build": phase_build, "add": phase_add}[args.phase](args)
        print(json.dumps(result or {}))
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    if not (CACHE / "source.json").exists() or \
            json.loads((CACHE / "source.json").read_text())["embedding"] != args.embedding:
        _run_phase("source", REPO, ["--source", args.source, "--embedding", args.embedding])
    code = Path(args.code).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        index = str(Path(tmp) / "index")
        common = ["--index", index, "--embedding", args.embedding]
        built = _run_phase("build", code, common + ["--chunks", str(args.chunks), "--noise", str(args.noise)])
        added = _run_phase("add", code, common)
    result = {"code": str(code), "noise_sigma": args.noise, **built, **added}
    sys.path.insert(0, str(REPO / "bench"))
    from common import report
    report(f"bench_update{'' if code == REPO else '-' + code.name}", result)


if __name__ == "__main__":
    main()
