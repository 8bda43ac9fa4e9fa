"""Any sentence-transformers model: a local folder, or a hub id already in the local cache.

Loading never reaches the network (HF_HUB_OFFLINE): an offline tool must not hang on a
download, and a model that is not on disk gets a clear error instead.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .base import Embedder, EmbeddingError, normalise


class SentenceTransformerEmbedder(Embedder):
    def __init__(self, name_or_path: str) -> None:
        self.spec = f"sentence-transformers:{name_or_path}"
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise EmbeddingError("this backend needs `sentence-transformers` (pip install sentence-transformers)") from None
        try:
            self._model = SentenceTransformer(name_or_path, device="cpu",
                                              local_files_only=not Path(name_or_path).is_dir())
        except Exception as exc:  # the library raises OSError, ValueError, HF errors...
            raise EmbeddingError(f"cannot load sentence-transformers model {name_or_path!r} offline: {exc}. "
                                 "Give a local model folder, or a hub id already in the local cache.") from None
        dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(dim())

    def encode(self, texts: list[str], is_query: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalise(self._model.encode(list(texts), batch_size=16, convert_to_numpy=True,
                                            show_progress_bar=False))
