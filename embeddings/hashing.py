"""``hash-test``: a deterministic bag-of-character-bigrams embedder for tests.

It loads no model and embeds thousands of texts a second, so tests that run `rag` as a
real subprocess many times (the fault-injection suite) spend their time on the code under
test. Texts sharing characters get similar vectors, which is enough to find a document by
its own words; it is no substitute for a language model.
"""
from __future__ import annotations

import zlib

import numpy as np

from .base import Embedder, normalise


class HashingEmbedder(Embedder):
    spec = "hash-test"
    dim = 64
    max_tokens = 512

    def encode(self, texts: list[str], is_query: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            text = text[:self.max_tokens]  # the same window as the real backends
            for gram in [*text, *(text[i:i + 2] for i in range(len(text) - 1))]:
                h = zlib.crc32(gram.encode("utf-8"))
                out[row, h % self.dim] += 1.0 if (h >> 16) & 1 else -1.0
        out[~out.any(axis=1), 0] = 1.0  # an empty text still gets a unit vector
        return normalise(out)
