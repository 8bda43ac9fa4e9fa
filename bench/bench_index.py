"""Cold index build and no-op re-index of the sample corpus, with peak memory."""
from __future__ import annotations

import tempfile
import time

from common import REPO, peak_rss_mib, report

from rag import Config, Engine


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(Config(index=f"{tmp}/index", corpus=str(REPO / "data" / "corpus")))
        t0 = time.perf_counter()
        engine.embedder  # model load is part of a cold build
        load_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        cold = engine.index(progress=False)
        cold_s = time.perf_counter() - t1
        t2 = time.perf_counter()
        noop = engine.index(progress=False)
        noop_s = time.perf_counter() - t2
        assert not noop.changed
        report("index", {
            "documents": len(engine.manifest().documents),
            "paragraphs": len(engine.store.view().paragraphs()),
            "chunks": len(engine.store.view()),
            "embedding_model_load_s": round(load_s, 3),
            "cold_build_s": round(cold_s, 2),
            "noop_reindex_s": round(noop_s, 4),
            "chunks_embedded_cold": cold.embedded_chunks,
            "chunks_embedded_noop": noop.embedded_chunks,
            "peak_rss_mib": round(peak_rss_mib(), 1),
        })


if __name__ == "__main__":
    main()
