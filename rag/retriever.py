"""Hybrid retrieval: dense (FAISS) and BM25 rankings fused by reciprocal rank.

Chunks are ranked, then collapsed to the paragraphs they came from: a paragraph scores
as its best chunk. The same retriever is offered to LangChain as a ``BaseRetriever``.
"""
from __future__ import annotations

import re
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Any

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever

from embeddings import Embedder

from .config import Config
from .documents import Paragraph, document_label
from .profile import ZH_GOV, Profile
from .store import Store
from .tokenize import issuer_place, mentions_place, tokenize


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


def require_question(query: str | None, max_chars: int = Config.max_question_chars) -> str:
    """The query without surrounding whitespace; QueryError if nothing is left or it is
    longer than ``max_chars`` (the work of a search grows with the question's length)."""
    query = (query or "").strip()
    if not query:
        raise QueryError("the question is empty; type a question such as 「莱芜区如何整改砂石问题」")
    if len(query) > max_chars:
        raise QueryError(f"the question is {len(query)} characters long; the limit is {max_chars} "
                         "(config max_question_chars): ask about one thing at a time")
    return query


def title_subjects(title: str, profile: Profile = ZH_GOV) -> list[str]:
    """What a title is about, as a reader would name it: the text between its issuer's
    「关于/印发/转发」 and its genre (的通知, 的意见…), and any 《name》 inside it."""
    subjects = re.findall(r"《([^》]{4,})》", title)
    m = profile.title_subject.search(title)
    if m and len(m.group("subject")) >= 6:
        subjects.append(m.group("subject"))
    return subjects


_QUERY_VECTORS: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
_QUERY_VECTORS_MAX = 2048
_query_lock = threading.Lock()


def query_vector(embedder: Embedder, query: str) -> np.ndarray:
    """The query's embedding, remembered for the last few thousand queries: the same
    question is searched again by a follow-up's retry, by each configuration of an
    evaluation, by a user asking twice, and embedding it costs more than the search."""
    key = (embedder.spec, query)
    with _query_lock:
        if key in _QUERY_VECTORS:
            _QUERY_VECTORS.move_to_end(key)
            return _QUERY_VECTORS[key]
    vector = embedder.encode([query], is_query=True)[0]
    with _query_lock:
        _QUERY_VECTORS[key] = vector
        while len(_QUERY_VECTORS) > _QUERY_VECTORS_MAX:
            _QUERY_VECTORS.popitem(last=False)
    return vector


def require_k(k: int | None, config: Config) -> int:
    """How many paragraphs to return: ``config.k`` when None, else 1..``config.max_k``."""
    if k is None:
        return config.k
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= config.max_k:
        raise QueryError(f"k (how many paragraphs) must be a whole number from 1 to {config.max_k} "
                         f"(config max_k), not {k!r}")
    return k


class Retriever:
    def __init__(self, store: Store, embedder: Embedder, config: Config):
        self.store, self.embedder, self.config = store, embedder, config

    def search(self, query: str, k: int | None = None, doc_ids: set[str] | list[str] | None = None
               ) -> list[Hit]:
        query = require_question(query, self.config.max_question_chars)
        k = require_k(k, self.config)
        docs = set(doc_ids) if doc_ids else None
        view = self.store.view()  # one version of the index for the whole search
        scopes = [s & docs if docs else s for s in self._place_scopes(query, view)]
        if len([s for s in scopes if s]) > 1:
            # A question comparing places (莱芜区和济南市分别…) is searched in each place's
            # documents and the rankings interleaved, so neither side crowds out the other.
            rankings = [self._rank(query, view, s, k) for s in scopes if s]
            ranked = [r for tier in zip_longest(*rankings)
                      for r in sorted(filter(None, tier), key=lambda r: -r[1][0].score)][:k]
        else:
            # One place: its documents are preferred, unless they are all there is.
            preferred = scopes[0] if len(scopes) == 1 and len(scopes[0]) < len(view.manifest.documents) else set()
            named, asked = self._named_documents(query, view)
            if named and len(named) < len(view.manifest.documents):
                # A question naming a document by its title (《…暂行办法》从什么时候开始施行)
                # is asked of that document, and about what follows the name: every
                # paragraph of it would match the name, its cover letter most of all.
                preferred = (preferred & named) or named
                query = asked
            ranked = self._rank(query, view, docs, k, preferred)
        documents = view.manifest.documents
        hits = []
        for rank, (pid, found) in enumerate(ranked, start=1):
            paragraph = view.paragraph(pid)
            meta = documents.get(paragraph.doc_id, {})
            hits.append(Hit(rank, found[0].score, paragraph, document_label(meta.get("title") or paragraph.doc_id, meta.get("place", "")),
                            meta.get("date", ""), found))
        return hits

    def search_many(self, queries: list[str], k: int | None = None,
                    doc_ids: set[str] | list[str] | None = None) -> list[Hit]:
        """One question searched in several wordings (as asked, restated in the documents'
        style), the rankings fused by reciprocal rank. Each ranking is read twice as deep
        as kept, so a paragraph sixth in one and second in the other counts both ranks."""
        k = require_k(k, self.config)
        rankings = [self.search(q, min(2 * k, self.config.max_k), doc_ids) for q in dict.fromkeys(queries)]
        return fuse(rankings, k, self.config.rrf_k)

    @staticmethod
    def _place_scopes(query: str, view) -> list[set[str]]:
        """For each place the query names that some documents were issued for (济南市 or
        just 济南 → the city's report), those documents. Wording alone cannot tell the
        city's report from the district's: both speak of 济南 and 莱芜."""
        by_place, _, _ = _document_names(view)
        return [docs for place, docs in by_place.items() if mentions_place(query, place)]

    @staticmethod
    def _named_documents(query: str, view) -> tuple[set[str], str]:
        """The documents whose title's subject the query names (「个人所得税专项附加扣除暂行
        办法」 for 「国务院关于印发个人所得税专项附加扣除暂行办法的通知」), and the query
        without that name when enough is left to search for."""
        named: set[str] = set()
        rest = query
        _, subjects, distinct = _document_names(view)
        if not any(subject in query for subject in distinct):
            return named, rest
        for doc_id, doc_subjects in subjects:
            for subject in doc_subjects:
                if subject in query:
                    named.add(doc_id)
                    remainder = rest.replace(f"《{subject}》", "").replace(subject, "")
                    if len(re.findall(r"[\u4e00-\u9fff]", remainder)) >= 4:
                        rest = remainder
        return named, rest

    def _rank(self, query: str, view, docs: set[str] | None, k: int, preferred: set[str] = frozenset()
              ) -> list[tuple[str, list[Match]]]:
        """The k best paragraphs (id, matched chunks best first) by fused chunk scores,
        with a bonus for chunks of the ``preferred`` documents."""
        cfg = self.config
        fused: dict[int, float] = {}
        cosines: dict[int, float] = {}
        if cfg.dense_weight > 0:
            vector = query_vector(self.embedder, query)
            for rank, (pos, cosine) in enumerate(view.dense_search(vector, cfg.candidates, docs)):
                fused[pos] = fused.get(pos, 0.0) + cfg.dense_weight / (cfg.rrf_k + rank + 1)
                cosines[pos] = cosine
        if cfg.bm25_weight > 0:
            for rank, (pos, _) in enumerate(view.keyword_search(tokenize(query), cfg.candidates, docs)):
                fused[pos] = fused.get(pos, 0.0) + cfg.bm25_weight / (cfg.rrf_k + rank + 1)
        if preferred and cfg.scope_weight > 0:
            bonus = cfg.scope_weight / (cfg.rrf_k + 1)
            for pos in fused:
                if view.chunk(pos).doc_id in preferred:
                    fused[pos] += bonus
        matches: dict[str, list[Match]] = {}
        for pos, score in sorted(fused.items(), key=lambda kv: -kv[1]):
            chunk = view.chunk(pos)
            matches.setdefault(chunk.paragraph_id, []).append(Match(chunk.text, score, cosines.get(pos)))
        # A paragraph scores as its best chunk.
        return sorted(matches.items(), key=lambda kv: (-kv[1][0].score, kv[0]))[:k]


_NAMES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_names_lock = threading.Lock()


def _document_names(view) -> tuple[dict[str, set[str]], list[tuple[str, list[str]]], set[str]]:
    """Per view, once (a query then reads these, not every document's record: 25,000
    documents took 40 ms a query): the documents of each issuer's place, in the order the
    manifest first names the place; each document's title subjects; the distinct subjects."""
    with _names_lock:
        if view in _NAMES:
            return _NAMES[view]
    by_place: dict[str, set[str]] = {}
    subjects: list[tuple[str, list[str]]] = []
    for doc_id, meta in view.manifest.documents.items():
        # The issuer's place is stored at index time; an index made before that
        # reads it from the title.
        place = meta["place"] if "place" in meta else issuer_place(meta.get("title", ""))
        if place:
            by_place.setdefault(place, set()).add(doc_id)
        found = title_subjects(meta.get("title", ""))
        if found:
            subjects.append((doc_id, found))
    names = (by_place, subjects, {s for _, found in subjects for s in found})
    with _names_lock:
        _NAMES[view] = names
    return names


def fuse(rankings: list[list[Hit]], k: int, rrf_k: int) -> list[Hit]:
    """Several rankings of paragraphs (one question searched in different words) as one,
    by reciprocal rank; a paragraph keeps the chunks every ranking matched in it."""
    scores: dict[str, float] = {}
    found: dict[str, Hit] = {}
    matches: dict[str, list[Match]] = {}
    for hits in rankings:
        for hit in hits:
            pid = hit.paragraph.id
            scores[pid] = scores.get(pid, 0.0) + 1.0 / (rrf_k + hit.rank)
            found.setdefault(pid, hit)
            matches.setdefault(pid, []).extend(hit.matches)
    best = sorted(scores, key=lambda pid: (-scores[pid], pid))[:k]
    hits = []
    for rank, pid in enumerate(best, start=1):
        # Chunk scores are rescaled to the fused paragraph score, so sentences are chosen
        # in the fused order of their paragraphs (the best chunk scores as its paragraph).
        top = max(m.score for m in matches[pid]) or 1.0
        rescaled = [Match(m.text, scores[pid] * m.score / top, m.cosine) for m in matches[pid]]
        hits.append(Hit(rank, scores[pid], found[pid].paragraph, found[pid].doc_title, found[pid].doc_date,
                        sorted(rescaled, key=lambda m: -m.score)))
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
