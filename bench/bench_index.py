"""Cold index build and no-op re-index of a corpus, with throughput and peak memory.

    .venv/bin/python bench/bench_index.py                       # the sample corpus
    .venv/bin/python bench/bench_index.py --corpus eval/corpus-dev

Reports chunks embedded per second and tokens embedded per corpus character (the
embedding cost of a document: each chunk carries its "title > heading" header, and
chunks overlap), so a folder's indexing time can be estimated from its size.
"""
from __future__ import annotations

import argparse
import tempfile
import time

from common import REPO, peak_rss_mib, report

from rag import Config, Engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(REPO / "data" / "corpus"), help="folder to index")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(Config(index=f"{tmp}/index", corpus=args.corpus))
        t0 = time.perf_counter()
        embedder = engine.embedder  # model load is part of a cold build
        load_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        cold = engine.index(progress=False)
        cold_s = time.perf_counter() - t1
        t2 = time.perf_counter()
        noop = engine.index(progress=False)
        noop_s = time.perf_counter() - t2
        assert not noop.changed
        view = engine.store.view()
        paragraphs = view.paragraphs()
        corpus_chars = sum(len(p.text) for p in paragraphs)
        chunk_texts = [view.chunk(i).indexed_text for i in range(len(view))]
        count = getattr(embedder, "token_count", None)
        tokens = sum(count(t) for t in chunk_texts) if count else None
        report("index-" + args.corpus.rstrip("/").split("/")[-1], {
            "corpus": args.corpus,
            "documents": len(engine.manifest().documents),
            "paragraphs": len(paragraphs),
            "chunks": len(view),
            "paragraph_chars": corpus_chars,
            "embedding_model_load_s": round(load_s, 3),
            "cold_build_s": round(cold_s, 2),
            "chunks_per_s": round(cold.embedded_chunks / cold_s, 2) if cold_s else None,
            "tokens_embedded": tokens,
            "tokens_per_corpus_char": round(tokens / corpus_chars, 3) if tokens and corpus_chars else None,
            "noop_reindex_s": round(noop_s, 4),
            "chunks_embedded_cold": cold.embedded_chunks,
            "chunks_embedded_noop": noop.embedded_chunks,
            "peak_rss_mib": round(peak_rss_mib(), 1),
        })


if __name__ == "__main__":
    main()
