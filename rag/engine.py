"""The core object: one configuration, one index, its retriever (and, later, answers).

    engine = Engine(Config.load())
    engine.index()                      # incremental; builds the index the first time
    hits = engine.search("莱芜区如何整改砂石问题", k=5)
"""
from __future__ import annotations

import threading
from pathlib import Path

from embeddings import Embedder, get_embedder

from .config import Config
from .indexer import IndexReport, check_compatible, index_paths
from .retriever import Hit, Retriever, require_question
from .store import FileStore, Manifest


class Engine:
    def __init__(self, config: Config | None = None):
        self.config = config or Config()
        self.store = FileStore(self.config.index)
        self._embedder: Embedder | None = None
        self._write_lock = threading.Lock()  # one index write at a time within a process

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = get_embedder(self.config.embedding)
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
        require_question(query)  # before building an index for nothing
        self.ensure_index(progress=progress)
        check_compatible(self.store.manifest(), self.embedder)
        return self.retriever.search(query, k, doc_ids)

    def manifest(self) -> Manifest:
        self.ensure_index()
        return self.store.manifest()

    def remove(self, doc_ids: list[str]) -> None:
        with self._write_lock:
            manifest = self.store.manifest()
            unknown = [d for d in doc_ids if d not in manifest.documents]
            if unknown:
                raise KeyError(f"not in the index: {', '.join(unknown)}")
            self.store.apply(Manifest(manifest.embedding, manifest.dim, manifest.chunking), [], doc_ids)
