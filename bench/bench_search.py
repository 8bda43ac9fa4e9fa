"""Warm retrieval latency (embedding the query + dense + BM25 + fusion) per question."""
from __future__ import annotations

import json
import time

from common import REPO, peak_rss_mib, percentile, report

from rag import Config, Engine


def main(rounds: int = 3) -> None:
    engine = Engine(Config(corpus=str(REPO / "data" / "corpus"), index=str(REPO / ".rag" / "index")))
    engine.ensure_index(progress=False)
    questions = [json.loads(line)["question"] for line in
                 (REPO / "eval" / "questions.jsonl").read_text(encoding="utf-8").splitlines()]
    engine.search(questions[0])  # warm-up: model, jieba dictionary, index files
    times = []
    for _ in range(rounds):
        for q in questions:
            t = time.perf_counter()
            engine.search(q, k=5)
            times.append((time.perf_counter() - t) * 1000)
    report("search", {
        "queries": len(times),
        "p50_ms": round(percentile(times, 0.5), 2),
        "p95_ms": round(percentile(times, 0.95), 2),
        "max_ms": round(max(times), 2),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    })


if __name__ == "__main__":
    main()
