"""The index stores at 10⁴–10⁶ paragraphs: FAISS flat, FAISS HNSW and milvus-lite.

    .venv/bin/python bench/bench_scale.py --sizes 10000,100000 --stores faiss-flat,faiss-hnsw,milvus-lite

For each store and size, on the synthetic library of bench/synth.py (same seed, so every
store holds the same chunks and vectors):

* a build process writes the index (``Store.apply`` in batches, as `rag index` would
  after embedding): build time, its peak RSS, the index's size on disk;
* a fresh query process opens it and runs the project's questions (eval/questions*.jsonl)
  through the real retriever (dense + BM25, RRF, chunks collapsed to paragraphs) with the
  query vectors computed beforehand, so the times exclude the query embedding: open time,
  latency p50/p95 one query at a time and with 8 threads at once (after one warm-up pass),
  peak RSS;
* recall@10 of each approximate dense search against FAISS flat on the same queries.

Results: one JSON object, also written to bench/results/bench_scale.json. The synthetic
indexes live in --workdir (default /tmp/rag-bench-scale) and are reused when present.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from common import REPO, peak_rss_mib, percentile, report

STORES = ("faiss-flat", "faiss-hnsw", "milvus-lite")
SEED = 15


def _config(store: str, root: Path):
    from rag import Config
    base = Config(index=str(root / "index"), corpus=str(root / "none"), llm="extractive")
    if store == "milvus-lite":
        return base.replace(store="milvus", milvus_uri=str(root / "milvus.db"))
    # faiss_hnsw_above: 0 = always HNSW; a huge number = always flat
    config = base.replace(faiss_hnsw_above=0 if store == "faiss-hnsw" else 10**12)
    if os.environ.get("BENCH_HNSW_EF_CONSTRUCTION"):  # --hnsw-ef-construction, for the child processes
        config = config.replace(hnsw_ef_construction=int(os.environ["BENCH_HNSW_EF_CONSTRUCTION"]))
    return config


def _embedder():
    from embeddings import get_embedder
    from rag import Config
    return get_embedder(Config().embedding)


class PrecomputedEmbedder:
    """The real embedder's query vectors, computed before timing starts."""

    def __init__(self, spec: str, dim: int, vectors: dict[str, np.ndarray]):
        self.spec, self.dim, self._vectors = spec, dim, vectors

    def encode(self, texts, is_query=False):
        return np.stack([self._vectors[t] for t in texts])


def _questions() -> list[str]:
    out = []
    for name in ("questions.jsonl", "questions-dev.jsonl"):
        path = REPO / "eval" / name
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                row = json.loads(line) if line.strip().startswith("{") else {}
                if row.get("question"):
                    out.append(row["question"])
    return list(dict.fromkeys(out))


def _query_vectors(workdir: Path) -> dict[str, np.ndarray]:
    path = workdir / "queries.npz"
    questions = _questions()
    if path.exists():
        data = np.load(path)
        if list(data["questions"]) == questions:
            return dict(zip(questions, data["vectors"]))
    vectors = _embedder().encode(questions, is_query=True)
    np.savez(path, questions=np.array(questions), vectors=vectors)
    return dict(zip(questions, vectors))


def _du_mib(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


# -- the two child processes ---------------------------------------------------------------
def child_build(store_name: str, size: int, root: Path) -> dict:
    import rag.store as store_module
    from rag.factory import make_store
    from rag.indexer import chunking_settings
    from rag.store import Manifest
    from synth import SentenceTokenizer, load_real, synth_documents

    config = _config(store_name, root)
    if (root / "index").is_symlink():  # --hnsw-on-flat: the flat run's folder; build its graphs only
        store = make_store(config)
        store.configure(config)
        started = time.perf_counter()
        store.view()  # the first open with faiss_hnsw_above = 0 builds and keeps the graphs
        flat = json.loads((root / "index").resolve().parent.joinpath("build.json").read_text())
        graphs = sum(p.stat().st_size for p in (root / "index").resolve().rglob("dense-hnsw-*.faiss"))
        return {**flat, "graphs_s": round(time.perf_counter() - started, 1),
                "graphs_peak_rss_mib": round(peak_rss_mib()), "graphs_disk_mib": round(graphs / 2**20, 1),
                "index": "the faiss-flat run's"}
    embedder = _embedder()
    real = load_real(embedder)
    store_module.tokenize = SentenceTokenizer()  # exact tokens, memoised (bench/synth.py)
    store = make_store(config)
    store.configure(config)
    if hasattr(store, "max_segments"):
        store.max_segments = 16  # the batches below stay separate segments: no compaction
    batch_paragraphs = max(20_000, size // 8)  # 8 segments
    manifest = lambda: Manifest(embedder.spec, embedder.dim, chunking_settings(config))  # noqa: E731
    started, generated_s, chunks, batch, in_batch = time.perf_counter(), 0.0, 0, [], 0
    gen_started = time.perf_counter()
    for entry in synth_documents(real, size, seed=SEED, dim=embedder.dim):
        batch.append(entry)
        in_batch += len(entry.paragraphs)
        chunks += len(entry.chunks)
        if in_batch >= batch_paragraphs:
            generated_s += time.perf_counter() - gen_started
            store.apply(manifest(), batch, [])
            batch, in_batch, gen_started = [], 0, time.perf_counter()
    generated_s += time.perf_counter() - gen_started
    if batch:
        store.apply(manifest(), batch, [])
    if store_name != "faiss-flat":
        store.view()  # the first open after a write builds (and, for HNSW, keeps) the dense indexes
    total = time.perf_counter() - started
    if hasattr(store, "close"):
        store.close()
    where = root / ("milvus.db" if store_name == "milvus-lite" else "index")
    return {"paragraphs": size, "chunks": chunks, "build_s": round(total - generated_s, 1),
            "generate_s": round(generated_s, 1), "build_peak_rss_mib": round(peak_rss_mib()),
            "disk_mib": round(_du_mib(where), 1)}


def child_query(store_name: str, size: int, root: Path, workdir: Path, threads: int,
                faiss_threads: int, max_queries: int = 0) -> dict:
    from rag.factory import make_store
    from rag.retriever import Retriever
    config = _config(store_name, root)
    if faiss_threads:
        # One query at a time gains nothing from OpenMP's threads on 2 busy cores and loses
        # much to their spinning (rag/store.py runs single queries on one thread too).
        import faiss
        faiss.omp_set_num_threads(faiss_threads)
    vectors = _query_vectors(workdir)
    questions = list(vectors)[:max_queries or None]
    store = make_store(config)
    store.configure(config)
    started = time.perf_counter()
    view = store.view()
    open_s = time.perf_counter() - started
    spec = view.manifest.embedding
    retriever = Retriever(store, PrecomputedEmbedder(spec, view.manifest.dim, vectors), config)

    def timed(q):
        t = time.perf_counter()
        retriever.search(q, k=5)
        return (time.perf_counter() - t) * 1000

    for q in questions:  # warm-up: caches, lazy loads
        retriever.search(q, k=5)
    single = [timed(q) for q in questions]
    with ThreadPoolExecutor(threads) as pool:
        parallel = list(pool.map(timed, questions * 2))
    dense = {}
    dense_ms = []
    for q in questions:
        t = time.perf_counter()
        hits = view.dense_search(vectors[q], 10)
        dense_ms.append((time.perf_counter() - t) * 1000)
        dense[q] = [f"{view.chunk(p).paragraph_id}|{view.chunk(p).text}" for p, _ in hits]
    (root / "dense-top10.json").write_text(json.dumps(dense, ensure_ascii=False))
    out = {"open_s": round(open_s, 2), "queries": len(questions),
           "p50_ms": round(percentile(single, 0.5), 1), "p95_ms": round(percentile(single, 0.95), 1),
           f"par{threads}_p50_ms": round(percentile(parallel, 0.5), 1),
           f"par{threads}_p95_ms": round(percentile(parallel, 0.95), 1),
           "dense_p50_ms": round(percentile(dense_ms, 0.5), 2), "dense_p95_ms": round(percentile(dense_ms, 0.95), 2),
           "query_peak_rss_mib": round(peak_rss_mib()), "faiss_threads": faiss_threads or "default"}
    if hasattr(store, "close"):
        store.close()
    return out


def _recall(root_a: Path, root_b: Path, k: int = 10) -> float:
    a = json.loads((root_a / "dense-top10.json").read_text())
    b = json.loads((root_b / "dense-top10.json").read_text())
    found = [len(set(a[q][:k]) & set(b[q][:k])) / max(1, len(a[q][:k])) for q in a if q in b]
    return round(float(np.mean(found)), 4)


def _run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                         cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="paragraph counts, comma-separated")
    parser.add_argument("--stores", default=",".join(STORES), help=f"any of {', '.join(STORES)}")
    parser.add_argument("--workdir", default="/tmp/rag-bench-scale")
    parser.add_argument("--threads", type=int, default=8, help="parallel queries")
    parser.add_argument("--fresh", action="store_true", help="rebuild indexes that exist")
    parser.add_argument("--queries", type=int, default=0,
                        help="use only the first N questions (0 = all; milvus-lite answers slowly)")
    parser.add_argument("--faiss-threads", type=int, default=1,
                        help="OpenMP threads for FAISS in the query process (0 = FAISS's default)")
    parser.add_argument("--hnsw-on-flat", action="store_true",
                        help="faiss-hnsw opens the faiss-flat run's folder with faiss_hnsw_above = 0 "
                             "(its graphs are built once and kept beside the segments) instead of "
                             "writing the same library again")
    parser.add_argument("--hnsw-ef-construction", type=int, default=0,
                        help="HNSW efConstruction (0 = the configured hnsw_ef_construction)")
    args = parser.parse_args()
    if args.hnsw_ef_construction:
        os.environ["BENCH_HNSW_EF_CONSTRUCTION"] = str(args.hnsw_ef_construction)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    stores = [s for s in args.stores.split(",") if s]
    unknown = set(stores) - set(STORES)
    if unknown:
        parser.error(f"unknown store(s) {', '.join(sorted(unknown))}; use {', '.join(STORES)}")
    _query_vectors(workdir)
    results = {"machine": f"{os.cpu_count()} cores", "seed": SEED, "runs": []}
    for size in [int(s) for s in args.sizes.split(",")]:
        roots = {}
        for store in stores:
            root = roots[store] = workdir / f"{store}-{size}"
            done = root / "build.json"
            if args.fresh or not done.exists():
                shutil.rmtree(root, ignore_errors=True)
                root.mkdir(parents=True)
                if store == "faiss-hnsw" and args.hnsw_on_flat:
                    flat = workdir / f"faiss-flat-{size}"
                    if not (flat / "build.json").exists():
                        parser.error(f"--hnsw-on-flat: build {flat} first (--stores faiss-flat,faiss-hnsw)")
                    (root / "index").symlink_to(flat / "index")
                done.write_text(json.dumps(_run_child("_build", store, str(size), str(root))))
            row = {"store": store, **json.loads(done.read_text()),
                   **_run_child("_query", store, str(size), str(root), str(workdir), str(args.threads),
                               str(args.faiss_threads), str(args.queries))}
            results["runs"].append(row)
            print(json.dumps(row), file=sys.stderr)
        if "faiss-flat" in roots:
            for store in stores:
                if store != "faiss-flat":
                    for row in results["runs"]:
                        if row["store"] == store and row["paragraphs"] == size:
                            row["recall_at_10_vs_flat"] = _recall(roots["faiss-flat"], roots[store])
    report("bench_scale", results)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_build":
        print(json.dumps(child_build(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))))
    elif len(sys.argv) > 1 and sys.argv[1] == "_query":
        print(json.dumps(child_query(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5]),
                                     int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8]))))
    else:
        main()
