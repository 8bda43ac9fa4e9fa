"""The core object: one configuration, one index, its retriever, and the answers.

    engine = Engine(Config.load())
    engine.index()                      # incremental; builds the index the first time
    hits = engine.search("莱芜区如何整改砂石问题", k=5)
    answer = engine.ask("那济南市呢？", history=[("莱芜区如何整改砂石问题", "…")])

The CLI, the UI, the API server, ``rag eval`` and ``bench/`` all answer through
``Engine.ask`` / ``Engine.answerer``; backends are chosen by name in ``rag.factory``.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from embeddings import Embedder

from .config import Config
from .factory import GeneratorPool, make_embedder, make_store
from .indexer import IndexReport, check_compatible, index_paths
from .retriever import Hit, Retriever, require_question
from .store import Manifest

if TYPE_CHECKING:  # answer.py imports this module
    from .answer import Answer, Answerer


class Engine:
    def __init__(self, config: Config | None = None, embedder: Embedder | None = None):
        self.config = config or Config()
        self.store = make_store(self.config)  # FileStore or MilvusStore, by config.store
        self._embedder = embedder  # None: the configured backend, loaded on first use
        self._write_lock = threading.Lock()  # one index write at a time within a process
        self.generators = GeneratorPool(self.config)  # each generator built once, shared

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = make_embedder(self.config)
        return self._embedder

    @property
    def retriever(self) -> Retriever:
        return Retriever(self.store, self.embedder, self.config)

    def index(self, paths: list[str | Path] | None = None, rebuild: bool = False,
              progress: bool = True) -> IndexReport:
        with self._write_lock:
            report = index_paths([Path(p) for p in (paths or [self.config.corpus])], self.store,
                                 self.embedder, self.config, rebuild=rebuild, progress=progress)
            return report

    def ensure_index(self, progress: bool = True) -> IndexReport | None:
        """Build the index from the configured corpus if there is none yet."""
        if self.store.exists():
            return None
        return self.index(progress=progress)

    def search(self, query: str, k: int | None = None, doc_ids=None, progress: bool = True) -> list[Hit]:
        require_question(query, self.config.max_question_chars)  # before building an index for nothing
        self.ensure_index(progress=progress)
        check_compatible(self.store.manifest(), self.embedder)
        return self.retriever.search(query, k, doc_ids)

    def answerer(self, llm: str | None = None) -> "Answerer":
        """The assistant answering with generator ``llm`` (default: ``config.llm``);
        raises GeneratorError when that generator cannot be built."""
        from .answer import Answerer
        generator, notice = self.generators.get(llm)
        return Answerer(self, generator, notice)

    def ask(self, question: str, history: list[tuple[str, str]] | None = None, llm: str | None = None,
            k: int | None = None, doc_ids=None, on_token: Callable[[str], None] | None = None) -> "Answer":
        """A checked, cited answer; ``history`` holds the earlier (question, answer) turns,
        ``on_token`` receives the draft as it is generated."""
        return self.answerer(llm).ask(question, history, k, doc_ids, on_token=on_token)

    def manifest(self) -> Manifest:
        self.ensure_index()
        return self.store.manifest()

    def remove(self, doc_ids: list[str]) -> list[str]:
        """Remove documents (ids or paths), all or none, under the writers' lock (the ids
        are checked inside it, so a concurrent writer cannot change them meanwhile)."""
        from .indexer import remove_documents
        with self._write_lock:
            return remove_documents(self.store, list(doc_ids), self.config)
