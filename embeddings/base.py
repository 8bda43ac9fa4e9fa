"""The embedder interface and the factory that picks a backend from a config string."""
from __future__ import annotations

from abc import abstractmethod

import numpy as np
from langchain_core.embeddings import Embeddings


class EmbeddingError(RuntimeError):
    """An embedding backend that cannot be loaded or used."""


class Embedder(Embeddings):
    """Turns passages and queries into L2-normalised float32 vectors.

    Backends implement ``encode``; LangChain's list-of-floats methods are derived from it.
    """

    spec: str  # the config string that selects this backend, recorded in the index manifest
    dim: int

    @abstractmethod
    def encode(self, texts: list[str], is_query: bool = False) -> np.ndarray:
        """(len(texts), dim) float32 array of unit vectors."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encode(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.encode([text], is_query=True)[0].tolist()


def truncate_to_window(texts: list[str], token_count, max_tokens: int) -> list[str]:
    """Each text cut to the longest prefix of at most ``max_tokens`` tokens (prefix and
    special tokens included, as ``token_count`` counts them). A token covers at least one
    character, so a text of fewer characters than the window is left alone uncounted."""
    out = []
    for text in texts:
        if len(text) + 8 <= max_tokens or token_count(text) <= max_tokens:
            out.append(text)
            continue
        lo, hi = 0, min(len(text), max_tokens * 4)  # fits / does not fit, by binary search
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if token_count(text[:mid]) <= max_tokens else (lo, mid)
        out.append(text[:lo])
    return out


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


_cache: dict[str, Embedder] = {}


def get_embedder(spec: str) -> Embedder:
    """The backend named by ``spec``; loaded once per process (models are large)."""
    if spec not in _cache:
        if spec == "e5-small-q4":
            from .e5 import E5SmallQ4
            _cache[spec] = E5SmallQ4()
        elif spec == "hash-test":
            from .hashing import HashingEmbedder
            _cache[spec] = HashingEmbedder()
        elif spec.startswith("sentence-transformers:") and spec.split(":", 1)[1]:
            from .sentence_transformers import SentenceTransformerEmbedder
            _cache[spec] = SentenceTransformerEmbedder(spec.split(":", 1)[1])
        else:
            raise EmbeddingError(f"unknown embedding backend {spec!r}; use 'e5-small-q4' or "
                                 "'sentence-transformers:<model id or local folder>'")
    return _cache[spec]
