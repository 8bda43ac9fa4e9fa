"""One dataclass holds the whole configuration.

Precedence, lowest to highest: built-in defaults < config file (``rag.toml``, or the
file named by ``--config`` / ``RAG_CONFIG``) < environment variables (``RAG_<FIELD>``)
< command-line flags. Flags win because they are the most explicit, per-invocation choice.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration value or file that cannot be used."""


@dataclass
class Config:
    # Documents and index
    corpus: str = "data/corpus"
    # What the code knows about the kind of documents (headings, page chrome, metadata,
    # places, stop words, follow-up cues): a profile in rag/profile.py, by name.
    profile: str = "zh-gov"
    index: str = ".rag/index"
    embedding: str = "e5-small-q4"
    # Chunking: a paragraph longer than chunk_size characters is split at sentence ends.
    # Sentence-sized chunks (one or two sentences) let a question written in other words
    # meet the one sentence that answers it; they measured best from 400 down to 120 chars
    # (eval/RESULTS.md), and they are the units the answer prompt is built from.
    chunk_size: int = 120
    chunk_overlap: int = 30
    context_header: bool = True  # index "document title > own heading" in front of each chunk
    # Retrieval: reciprocal-rank fusion of dense and BM25 rankings
    k: int = 5
    dense_weight: float = 1.0
    bm25_weight: float = 0.5
    rrf_k: int = 10
    scope_weight: float = 0.5  # bonus for documents issued for a place the question names
    candidates: int = 50  # how deep each ranking is read before fusion
    # Answers
    llm: str = "local"  # local | gguf:<path> | openai | extractive
    base_url: str = ""  # for llm=openai
    model: str = ""  # for llm=openai
    request_timeout: float = 60.0
    # CPU threads of the bundled model's server (0 = llama.cpp's choice, the physical
    # cores). 1 leaves a core to other work: llama.cpp's threads wait for each other after
    # every layer, so on a shared 2-core machine two threads can be several times slower.
    llm_threads: int = 0
    # A folder of the LLM's replies kept by a hash of the exact request (development and
    # evaluation): with greedy decoding a reply depends only on its prompt, so a rerun
    # after a change to the checking code replays unchanged prompts instead of waiting for
    # the model again. Replayed answers say so (timings["llm_replayed"]); their timings
    # are not the model's. "" = off (the default: users always get the model).
    llm_cache: str = ""
    max_history_turns: int = 4
    # Below this evidence strength (share of the question's words in the best paragraphs,
    # 0 when a number or place the question names is absent) the answer is a refusal. No
    # answerable question of eval/questions.jsonl falls below it; two unanswerable ones
    # do (extractive row of eval/RESULTS.md).
    refusal_threshold: float = 0.15
    # Server (rag serve / rag ui): what it offers and how much work one request may ask for
    generators: str = ""  # comma-separated generator names offered; "" = llm, then extractive
    api_key: str = ""  # Bearer token for the API and the UI's password (RAG_API_KEY); required off loopback
    max_request_bytes: int = 1024 * 1024  # a larger API request body gets 413 (uploads: their own limit)
    max_messages: int = 50  # messages in one chat request; a conversation is its last few turns anyway
    max_message_chars: int = 4000  # characters in one message (earlier answers included)
    # Answers are serialised (one LLM call at a time on 2 cores). A request that would wait
    # longer than this for its turn gets 429 with Retry-After instead of hanging.
    queue_wait_s: float = 60.0
    max_queue: int = 32  # requests waiting for a turn; one more gets 429 at once
    # Index storage at scale (docs/scaling.md). store: "files" (FAISS + bm25s in the index
    # folder) or "milvus" (pymilvus; milvus_uri a local path → milvus-lite, embedded, or
    # http://host:19530 → a Milvus standalone or cluster).
    store: str = "files"
    milvus_uri: str = ".rag/milvus.db"
    # Above this many chunks the FAISS store builds an HNSW graph instead of a flat index
    # (recall@10 against flat measured in bench/README.md).
    faiss_hnsw_above: int = 200_000
    hnsw_m: int = 32
    hnsw_ef_search: int = 128
    hnsw_ef_construction: int = 200
    # Embedding while indexing: processes on this machine, or a Ray cluster's address
    # ("auto", "ray://host:10001", "local" for an in-process Ray); "" = not Ray.
    workers: int = 1
    ray_address: str = ""
    # Bounded work per request and safe index writes (issue 13).
    max_question_chars: int = 500  # a longer question is refused: embedding + jieba cost grows with it
    max_k: int = 50  # --k above this is refused; a ranking is read `candidates` deep anyway
    max_file_bytes: int = 50 * 1024 * 1024  # a larger file is skipped when indexing (parsing holds it in memory)
    lock_timeout: float = 120.0  # seconds a writer waits for another to finish before giving up
    # Segments in the file store before the smallest are merged: more means cheaper
    # updates, fewer means less work per search (each segment is searched on its own).
    max_segments: int = 8

    @classmethod
    def load(cls, config_file: str | os.PathLike | None = None,
             overrides: dict[str, Any] | None = None,
             environ: dict[str, str] | None = None) -> "Config":
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        path = config_file or env.get("RAG_CONFIG")
        if path is None and Path("rag.toml").is_file():
            path = "rag.toml"
        if path is not None:
            values.update(_read_file(Path(path)))
        for f in fields(cls):
            key = "RAG_" + f.name.upper()
            if key in env:
                values[f.name] = env[key]
        for name, value in (overrides or {}).items():
            if value is not None:
                values[name] = value
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Config":
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown configuration key(s): {', '.join(unknown)}; "
                              f"known keys: {', '.join(known)}")
        typed = {name: _coerce(name, known[name].type, value) for name, value in values.items()}
        return cls(**typed)

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    # Accept either top-level keys or a [rag] table.
    return dict(data.get("rag", data))


def _coerce(name: str, type_name: Any, value: Any) -> Any:
    type_name = str(type_name)
    try:
        if type_name == "bool":
            if isinstance(value, str):
                if value.lower() in {"1", "true", "yes", "on"}:
                    return True
                if value.lower() in {"0", "false", "no", "off"}:
                    return False
                raise ValueError(value)
            return bool(value)
        if type_name == "int":
            return int(value)
        if type_name == "float":
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"configuration {name}={value!r} is not a valid {type_name}") from None
