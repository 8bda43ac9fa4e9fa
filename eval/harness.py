"""Run a question set through named configurations, caching each question's result.

A result is cached in ``<out>/cache/<key>.json`` where the key hashes everything that
determines it: the pipeline, the whole Config, the mode, the corpus content, the source
of the rag and embeddings packages, and the question (with its history; in retrieval-only
runs, the standalone question searched). A rerun into the same folder only computes what
is missing, so an interrupted run resumes, and a changed configuration is recomputed.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from rag import Config, Engine
from rag.answer import rule_standalone

from .configs import CONFIGS
from .metrics import aggregate, answer_metrics, retrieval_metrics
from .pipelines import INDEX_CACHE, NaivePipeline, code_fingerprint, corpus_fingerprint, digest, open_engine
from .questions import Item

Ask = Callable[[str, list[list[str]]], dict]  # (question, history) → the rag ask --json object
Rewrite = Callable[[str, list[list[str]]], str]  # (follow-up, history) → standalone question


class EvalError(ValueError):
    """A run that cannot be done as asked (unknown configuration, naive with answers)."""


def rule_rewrite(question: str, history: list[list[str]]) -> str:
    """The standalone question ``rag ask`` searches for a follow-up when no LLM rewrites
    it (``Answerer.standalone`` with the extractive generator): retrieval-only runs use no LLM."""
    return rule_standalone(question, [tuple(turn) for turn in history])


def pipeline_ask(engine: Engine) -> Ask:
    """``rag ask --json`` on this engine, with the generator its Config names (``--llm``)."""
    answerer = engine.answerer()  # the generator by name, through rag.factory
    if answerer.notice:  # e.g. the bundled model is missing and answers fall back to extractive
        print(f"rag eval: {answerer.notice}", file=sys.stderr)

    def ask(question: str, history: list[list[str]]) -> dict:
        return answerer.ask(question, [tuple(turn) for turn in history]).to_dict()
    return ask


@dataclass
class ConfigRun:
    """One configuration's outcome, in question order."""
    name: str
    config: Config
    records: list[dict]  # results.jsonl lines
    rows: list[dict[str, float]]  # per-question metrics
    metrics: dict  # {"overall": ..., "by_type": ...}


def _open(pipeline: str, config: Config, retrieval_only: bool, make_ask: Callable[[Engine], Ask],
          index_cache: Path, progress: bool) -> Callable:
    """The configuration's search function ``query → retrieved dicts`` (retrieval-only), or
    its answer function ``(question, history) → rag ask --json object``."""
    if pipeline == "naive":
        naive = NaivePipeline(config, index_cache, progress)
        return lambda query: naive.search(query, config.k)
    engine = open_engine(config, index_cache, progress)
    if not retrieval_only:
        return make_ask(engine)
    return lambda query: [h.to_dict() for h in engine.search(query, config.k, progress=False)]


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def check_run(names: list[str], retrieval_only: bool) -> None:
    """Raise EvalError, before any work, for a run that cannot be done."""
    unknown = [name for name in names if name not in CONFIGS]
    if unknown:
        raise EvalError(f"unknown configuration {', '.join(map(repr, unknown))}; known: {', '.join(CONFIGS)}")
    if not retrieval_only and any(CONFIGS[name][0] == "naive" for name in names):
        raise EvalError("the naive configuration only retrieves; compare it with --retrieval-only")


def run_config(name: str, items: list[Item], base: Config, out: Path, *, retrieval_only: bool = True,
               make_ask: Callable[[Engine], Ask] = pipeline_ask, rewrite: Rewrite = rule_rewrite,
               index_cache: Path = INDEX_CACHE, progress: bool = True) -> ConfigRun:
    """Evaluate one named configuration; write ``<out>/<name>/results.jsonl``."""
    check_run([name], retrieval_only)
    pipeline, overrides = CONFIGS[name]
    config = base.replace(**overrides)
    # The index folder is left out: the harness chooses it from the other fields.
    setting = {"pipeline": pipeline,
               "config": {k: v for k, v in dataclasses.asdict(config).items() if k != "index"},
               "mode": "retrieval" if retrieval_only else "answer",
               "corpus": corpus_fingerprint(config.corpus), "code": code_fingerprint()}
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)

    backend = None  # opened at the first cache miss: a fully cached rerun loads no model
    records = []
    for item in tqdm(items, desc=name, unit="q", file=sys.stderr, disable=not progress):
        history = [list(turn) for turn in item.history]
        if retrieval_only:
            # What is searched decides the result; the rewrite is a cheap rule, so it is
            # computed even for cached questions, and a changed rule is noticed.
            query = rewrite(item.question, history) if history else item.question
            key = digest({**setting, "id": item.id, "query": query})
        else:
            key = digest({**setting, "id": item.id, "question": item.question, "history": history})
        path = cache / f"{key[:32]}.json"
        if path.is_file():
            records.append(json.loads(path.read_text(encoding="utf-8")))
            continue
        if backend is None:
            backend = _open(pipeline, config, retrieval_only, make_ask, index_cache, progress)
        if retrieval_only:
            record = {"id": item.id, "standalone_question": query, "retrieved": backend(query)}
        else:
            record = {"id": item.id, **backend(item.question, history)}
        _write_atomic(path, json.dumps(record, ensure_ascii=False))
        records.append(record)

    rows = []
    for item, record in zip(items, records):
        row = retrieval_metrics(item, record.get("retrieved") or [], config.k)
        if not retrieval_only:
            row |= answer_metrics(item, record)
        rows.append(row)
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomic(folder / "results.jsonl",
                  "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return ConfigRun(name, config, records, rows, aggregate(items, rows))
