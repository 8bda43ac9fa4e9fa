"""Retrieval settings measured on several question sets at once, for choosing defaults.

    python -m eval.tune '[{}, {"rrf_k": 5}, {"bm25_weight": 0.7}]'

Each set is indexed once (in ``.rag/tune-indexes/``, refreshed from its corpus: documents
are re-read, vectors reused by content hash) and searched under every setting, which
changes only ``Config`` fields that do not change the index (weights, depths). Queries are
embedded once per process. Prints hit@1, hit@5 and MRR per set and their average: a
default is chosen by the average, and not taken when it costs one set more than 0.02
hit@1 (eval/RESULTS.md). ``rag eval`` remains the measurement of record; this is the
quick loop behind it.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from rag import Config, Engine
from rag.answer import rule_standalone
from rag.retriever import Retriever

from .metrics import retrieval_metrics
from .questions import load_question_set

SETS = ("eval/questions.jsonl", "eval/questions-dev.jsonl")
CACHE = Path(".rag/tune-indexes")


def open_sets(base: Config, sets=SETS) -> dict[str, tuple[Engine, list]]:
    out = {}
    for path in sets:
        items, corpus = load_question_set(path)
        name = Path(path).stem
        engine = Engine(base.replace(corpus=str(corpus or base.corpus), index=str(CACHE / name)))
        engine.index(rebuild=Path(engine.config.index).exists(), progress=True)
        out[name] = (engine, items)
    return out


def measure(sets: dict[str, tuple[Engine, list]], **overrides) -> dict[str, dict[str, float]]:
    result = {}
    for name, (engine, items) in sets.items():
        retriever = Retriever(engine.store, engine.embedder, engine.config.replace(**overrides))
        rows = []
        for item in items:
            if not item.answerable or not item.evidence:
                continue
            history = [tuple(h) for h in item.history]
            question = rule_standalone(item.question, history) if history else item.question
            hits = retriever.search(question, 10)
            rows.append(retrieval_metrics(item, [h.to_dict() for h in hits], 10))
        result[name] = {m: round(sum(r[m] for r in rows) / len(rows), 3) for m in ("hit@1", "hit@5", "mrr")}
    result["average"] = {m: round(sum(r[m] for r in result.values()) / len(result), 3)
                         for m in ("hit@1", "hit@5", "mrr")}
    return result


def main(argv: list[str]) -> int:
    settings = json.loads(argv[0]) if argv else [{}]
    sets = open_sets(Config.load())
    for overrides in settings:
        t0 = time.perf_counter()
        print(json.dumps(overrides), json.dumps(measure(sets, **overrides), ensure_ascii=False),
              f"{time.perf_counter() - t0:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
