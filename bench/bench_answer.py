"""Answer latency per generator: time to first token and total, p50/p95, on the first N
questions of the project's set (the model server is started and warmed up first)."""
from __future__ import annotations

import argparse
import json
import time

from common import REPO, peak_rss_mib, percentile, report

from rag import Config, Engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--llm", default="local")
    parser.add_argument("--n", type=int, default=20, help="how many questions")
    args = parser.parse_args()
    engine = Engine(Config(corpus=str(REPO / "data" / "corpus"), index=str(REPO / ".rag" / "index"),
                           llm=args.llm))
    engine.ensure_index(progress=False)
    items = [json.loads(line) for line in (REPO / "eval" / "questions.jsonl").read_text(encoding="utf-8").splitlines()]
    items = [i for i in items if not i.get("history")][: args.n]
    t = time.perf_counter()
    answerer = engine.answerer()  # builds (and for local, starts) the generator
    generator = answerer.generator
    startup_s = time.perf_counter() - t
    answerer.ask(items[0]["question"])  # warm-up: caches the system prompt in the server
    first, total = [], []
    for item in items:
        a = answerer.ask(item["question"])
        if a.refused and "retrieval evidence below the refusal threshold" in a.flags:
            continue  # refused before generation: no LLM latency to measure
        first.append(a.timings["first_token_s"])
        total.append(a.timings["total_s"])
    report(f"answer-{args.llm.replace(':', '_').replace('/', '_')}", {
        "generator": generator.name,
        "questions": len(first),
        "generator_startup_s": round(startup_s, 2),
        "first_token_p50_s": round(percentile(first, 0.5), 2),
        "first_token_p95_s": round(percentile(first, 0.95), 2),
        "total_p50_s": round(percentile(total, 0.5), 2),
        "total_p95_s": round(percentile(total, 0.95), 2),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    })


if __name__ == "__main__":
    main()
