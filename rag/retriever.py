"""Hybrid retrieval: dense (FAISS) and BM25 rankings fused by reciprocal rank.

Chunks are ranked, then collapsed to the paragraphs they came from: a paragraph scores
as its best chunk. The same retriever is offered to LangChain as a ``BaseRetriever``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever

from embeddings import Embedder

from .config import Config
from .documents import Paragraph
from .store import Store
from .tokenize import tokenize


class QueryError(ValueError):
    """A query that cannot be searched (empty, whitespace only)."""


@dataclass
class Hit:
    rank: int
    score: float
    paragraph: Paragraph
    doc_title: str
    doc_date: str = ""

    def to_dict(self) -> dict:
        p = self.paragraph
        return {"rank": self.rank, "score": round(self.score, 6), "doc_id": p.doc_id,
                "doc_title": self.doc_title, "doc_date": self.doc_date, "section": p.section_path,
                "paragraph": p.number, "text": p.text}


class Retriever:
    def __init__(self, store: Store, embedder: Embedder, config: Config):
        self.store, self.embedder, self.config = store, embedder, config

    def search(self, query: str, k: int | None = None, doc_ids: set[str] | list[str] | None = None
               ) -> list[Hit]:
        query = (query or "").strip()
        if not query:
            raise QueryError("the question is empty; type a question such as 「莱芜区如何整改砂石问题」")
        k = k or self.config.k
        docs = set(doc_ids) if doc_ids else None
        cfg = self.config
        fused: dict[int, float] = {}
        if cfg.dense_weight > 0:
            vector = self.embedder.encode([query], is_query=True)[0]
            for rank, (pos, _) in enumerate(self.store.dense_search(vector, cfg.candidates, docs)):
                fused[pos] = fused.get(pos, 0.0) + cfg.dense_weight / (cfg.rrf_k + rank + 1)
        if cfg.bm25_weight > 0:
            for rank, (pos, _) in enumerate(self.store.keyword_search(tokenize(query), cfg.candidates, docs)):
                fused[pos] = fused.get(pos, 0.0) + cfg.bm25_weight / (cfg.rrf_k + rank + 1)
        best: dict[str, float] = {}
        for pos, score in fused.items():
            pid = self.store.chunk(pos).paragraph_id
            if score > best.get(pid, 0.0):
                best[pid] = score
        ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        documents = self.store.manifest().documents
        hits = []
        for rank, (pid, score) in enumerate(ranked, start=1):
            paragraph = self.store.paragraph(pid)
            meta = documents.get(paragraph.doc_id, {})
            hits.append(Hit(rank, score, paragraph, meta.get("title", paragraph.doc_id), meta.get("date", "")))
        return hits


class LangChainRetriever(BaseRetriever):
    """``Retriever`` as a LangChain retriever: one ``Document`` per cited paragraph."""

    retriever: Any
    k: int = 5
    doc_ids: list[str] | None = None

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun
                                ) -> list[LCDocument]:
        return [LCDocument(page_content=h.paragraph.text,
                           metadata={k: v for k, v in h.to_dict().items() if k != "text"})
                for h in self.retriever.search(query, self.k, self.doc_ids)]
