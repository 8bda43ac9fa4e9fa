"""Hybrid retrieval: dense (FAISS) and BM25 rankings fused by reciprocal rank.

Chunks are ranked, then collapsed to the paragraphs they came from: a paragraph scores
as its best chunk. The same retriever is offered to LangChain as a ``BaseRetriever``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever

from embeddings import Embedder

from .config import Config
from .documents import Paragraph
from .store import Store
from .tokenize import issuer_place, place_names, tokenize


class QueryError(ValueError):
    """A query that cannot be searched (empty, whitespace only)."""


@dataclass(frozen=True)
class Match:
    """A chunk of a hit's paragraph that one of the rankings found."""
    text: str
    score: float  # fused score
    cosine: float | None  # dense similarity, if the dense ranking saw it


@dataclass
class Hit:
    rank: int
    score: float
    paragraph: Paragraph
    doc_title: str
    doc_date: str = ""
    matches: list[Match] = field(default_factory=list)  # best first

    @property
    def cosine(self) -> float:
        """Best dense similarity among the matched chunks (0 when only BM25 found it)."""
        return max((m.cosine for m in self.matches if m.cosine is not None), default=0.0)

    def to_dict(self) -> dict:
        p = self.paragraph
        return {"rank": self.rank, "score": round(self.score, 6), "doc_id": p.doc_id,
                "doc_title": self.doc_title, "doc_date": self.doc_date, "section": p.section_path,
                "paragraph": p.number, "text": p.text}


def require_question(query: str | None) -> str:
    """The query without surrounding whitespace; QueryError if nothing is left."""
    query = (query or "").strip()
    if not query:
        raise QueryError("the question is empty; type a question such as 「莱芜区如何整改砂石问题」")
    return query


class Retriever:
    def __init__(self, store: Store, embedder: Embedder, config: Config):
        self.store, self.embedder, self.config = store, embedder, config

    def search(self, query: str, k: int | None = None, doc_ids: set[str] | list[str] | None = None
               ) -> list[Hit]:
        query = require_question(query)
        k = k or self.config.k
        docs = set(doc_ids) if doc_ids else None
        cfg = self.config
        view = self.store.view()  # one version of the index for the whole search
        fused: dict[int, float] = {}
        cosines: dict[int, float] = {}
        if cfg.dense_weight > 0:
            vector = self.embedder.encode([query], is_query=True)[0]
            for rank, (pos, cosine) in enumerate(view.dense_search(vector, cfg.candidates, docs)):
                fused[pos] = fused.get(pos, 0.0) + cfg.dense_weight / (cfg.rrf_k + rank + 1)
                cosines[pos] = cosine
        if cfg.bm25_weight > 0:
            for rank, (pos, _) in enumerate(view.keyword_search(tokenize(query), cfg.candidates, docs)):
                fused[pos] = fused.get(pos, 0.0) + cfg.bm25_weight / (cfg.rrf_k + rank + 1)
        if cfg.scope_weight > 0:
            # Documents issued for a place the question names (济南市 → the city's report,
            # not the district's) are preferred: wording alone cannot tell them apart.
            named = set(place_names(query))
            scoped = {d for d, meta in view.manifest.documents.items()
                      if issuer_place(meta.get("title", "")) in named}
            if scoped and len(scoped) < len(view.manifest.documents):
                bonus = cfg.scope_weight / (cfg.rrf_k + 1)
                for pos in fused:
                    if view.chunk(pos).doc_id in scoped:
                        fused[pos] += bonus
        matches: dict[str, list[Match]] = {}
        for pos, score in sorted(fused.items(), key=lambda kv: -kv[1]):
            chunk = view.chunk(pos)
            matches.setdefault(chunk.paragraph_id, []).append(Match(chunk.text, score, cosines.get(pos)))
        # A paragraph scores as its best chunk.
        ranked = sorted(matches.items(), key=lambda kv: (-kv[1][0].score, kv[0]))[:k]
        documents = view.manifest.documents
        hits = []
        for rank, (pid, found) in enumerate(ranked, start=1):
            paragraph = view.paragraph(pid)
            meta = documents.get(paragraph.doc_id, {})
            hits.append(Hit(rank, found[0].score, paragraph, meta.get("title", paragraph.doc_id),
                            meta.get("date", ""), found))
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
