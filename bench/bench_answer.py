"""Answer latency per generator: time to the evidence (the sources, known once it is
decided to answer), to the first token and in total, p50/p95, on the first N questions of
the project's set (the model server is started and warmed up first)."""
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
    first, total, evidence = [], [], []
    for item in items:
        started = time.perf_counter()
        shown: list[float] = []
        a = answerer.ask(item["question"], on_evidence=lambda hits: shown.append(time.perf_counter() - started))
        if not shown:
            continue  # refused before generation (weak retrieval, focus not found): no LLM latency
        evidence.append(shown[0])
        first.append(a.timings["first_token_s"])
        total.append(a.timings["total_s"])
    report(f"answer-{args.llm.replace(':', '_').replace('/', '_')}", {
        "generator": generator.name,
        "questions": len(first),
        "generator_startup_s": round(startup_s, 2),
        "evidence_p50_s": round(percentile(evidence, 0.5), 3),
        "first_token_p50_s": round(percentile(first, 0.5), 2),
        "first_token_p95_s": round(percentile(first, 0.95), 2),
        "total_p50_s": round(percentile(total, 0.5), 2),
        "total_p95_s": round(percentile(total, 0.95), 2),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    })


if __name__ == "__main__":
    main()
