"""Embedder throughput: chunks/s and tokens/s in this process and in N worker processes
(and, with --ray, on a local Ray), on real chunks of both corpora.

    .venv/bin/python bench/bench_embed.py --chunks 256 --workers 1,2 [--ray]

Each run embeds the same chunks from scratch (an empty journal) with
``rag.embed_workers.embed_missing``, the code `rag index --workers N` / `--ray` runs; the
times include starting the worker processes and loading the model in each.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import REPO, peak_rss_mib, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=256)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--ray", action="store_true", help="also run on a local Ray (Ray Data map_batches)")
    args = parser.parse_args()

    from embeddings import get_embedder
    from rag import Config
    from rag.chunking import chunk_document
    from rag.documents import find_files, load_document
    from rag.embed_workers import embed_missing

    config = Config()
    texts = {}
    for path in find_files([REPO / "data" / "corpus", REPO / "eval" / "corpus-dev"]):
        for c in chunk_document(load_document(path, path.name), config.chunk_size, config.chunk_overlap,
                                config.context_header):
            texts.setdefault(c.content_hash(config.embedding), c.indexed_text)
    texts = dict(list(texts.items())[:args.chunks])
    embedder = get_embedder(config.embedding)
    tokens = sum(embedder.token_count(t) for t in texts.values()) if hasattr(embedder, "token_count") else 0

    runs = []
    modes = [("processes", int(w)) for w in args.workers.split(",")] + ([("ray", 2)] if args.ray else [])
    for mode, workers in modes:
        with tempfile.TemporaryDirectory() as tmp:
            run_config = config.replace(index=str(Path(tmp) / "index"), workers=workers,
                                        ray_address="local" if mode == "ray" else "")
            load = os.getloadavg()[0]
            started = time.perf_counter()
            vectors, run = embed_missing(texts, embedder, run_config, progress=False)
            seconds = time.perf_counter() - started
        assert len(vectors) == len(texts) and run.embedded == len(texts)
        runs.append({"mode": "in-process" if mode == "processes" and workers == 1 else mode,
                     "workers": workers, "seconds": round(seconds, 1),
                     "chunks_per_s": round(len(texts) / seconds, 1),
                     "tokens_per_s": round(tokens / seconds) if tokens else None,
                     "load_average_at_start": round(load, 1)})
    report("bench_embed", {"chunks": len(texts), "tokens": tokens, "model": config.embedding,
                           "cores": os.cpu_count(), "runs": runs, "peak_rss_mib": round(peak_rss_mib())})


if __name__ == "__main__":
    main()
