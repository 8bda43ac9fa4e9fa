"""Index storage behind a small interface.

``Store`` is what the indexer writes and the retriever reads: chunks with their vectors
(dense search) and their tokens (keyword search), the citable paragraphs, and a manifest.
``FileStore`` keeps them in one folder (FAISS + bm25s files). A server-backed store
(Qdrant, Milvus, OpenSearch) implements the same methods for corpora beyond one machine.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import threading
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .chunking import Chunk
from .documents import Paragraph
from .tokenize import tokenize

FORMAT_VERSION = 1


class IndexStateError(RuntimeError):
    """An index that cannot be used as it is; the message names the fix."""


@dataclass
class DocumentEntry:
    """One document as stored: its manifest record, paragraphs, chunks and their vectors."""
    meta: dict
    paragraphs: list[Paragraph]
    chunks: list[Chunk]
    vectors: np.ndarray


@dataclass
class Manifest:
    embedding: str
    dim: int
    chunking: dict
    documents: dict[str, dict] = field(default_factory=dict)  # doc_id → meta (path, hash, title…)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        return {"format_version": self.format_version,
                "embedding": {"backend": self.embedding, "dim": self.dim},
                "chunking": self.chunking, "documents": self.documents}

    @classmethod
    def from_dict(cls, d: dict) -> "Manifest":
        return cls(embedding=d["embedding"]["backend"], dim=int(d["embedding"]["dim"]),
                   chunking=d["chunking"], documents=d["documents"],
                   format_version=int(d["format_version"]))


class IndexView(ABC):
    """A consistent, read-only view of one version of the index.

    A search reads everything through one view, so an index write that lands meanwhile
    (another process, or an upload in the UI) cannot mix two versions in one answer.
    """

    manifest: Manifest

    @abstractmethod
    def document(self, doc_id: str) -> DocumentEntry: ...

    @abstractmethod
    def paragraph(self, paragraph_id: str) -> Paragraph: ...

    @abstractmethod
    def paragraphs(self) -> list[Paragraph]: ...

    @abstractmethod
    def chunk(self, position: int) -> Chunk: ...

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def dense_search(self, vector: np.ndarray, n: int, doc_ids: set[str] | None = None
                     ) -> list[tuple[int, float]]:
        """(chunk position, cosine) best first."""

    @abstractmethod
    def keyword_search(self, tokens: list[str], n: int, doc_ids: set[str] | None = None
                       ) -> list[tuple[int, float]]:
        """(chunk position, BM25 score > 0) best first."""


class Store(ABC):
    @abstractmethod
    def exists(self) -> bool: ...

    @abstractmethod
    def view(self) -> IndexView:
        """The current version; raises IndexStateError when there is none or it is damaged."""

    @abstractmethod
    def apply(self, manifest: Manifest, upserts: list[DocumentEntry], deletions: list[str],
              replace_all: bool = False) -> None:
        """Add or replace the given documents and delete others, all or nothing.
        ``replace_all``: the index holds exactly ``upserts`` afterwards (a rebuild)."""

    def manifest(self) -> Manifest:
        return self.view().manifest


class FileView(IndexView):
    """One generation folder, loaded into memory: FAISS, bm25s and the JSONL records."""

    def __init__(self, root: Path, gen: str):
        import bm25s
        import faiss
        folder = root / gen
        fix = f"rebuild it with `rag index --rebuild` (index folder: {root})"
        try:
            raw = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
            version = int(raw.get("format_version", 0))
            if version != FORMAT_VERSION:
                raise IndexStateError(f"the index was written in format {version}, this version reads "
                                      f"format {FORMAT_VERSION}; {fix}")
            manifest = Manifest.from_dict(raw)
            paragraphs = [Paragraph.from_dict(json.loads(line)) for line in
                          (folder / "paragraphs.jsonl").read_text(encoding="utf-8").splitlines()]
            chunks = [Chunk(**json.loads(line)) for line in
                      (folder / "chunks.jsonl").read_text(encoding="utf-8").splitlines()]
            vectors = np.load(folder / "vectors.npy")
            dense = faiss.read_index(str(folder / "dense.faiss"))
            keyword = bm25s.BM25.load(str(folder / "bm25"), show_progress=False) if chunks else None
        except IndexStateError:
            raise
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise IndexStateError(f"the index is damaged ({type(exc).__name__}: {exc}); {fix}") from None
        if not (len(chunks) == vectors.shape[0] == dense.ntotal) or (
                len(chunks) and vectors.shape[1] != manifest.dim):
            raise IndexStateError(f"the index is damaged (chunks, vectors and FAISS disagree); {fix}")
        self.gen, self.manifest = gen, manifest
        self._paragraphs = {p.id: p for p in paragraphs}
        self._chunks, self._vectors, self._dense, self._keyword = chunks, vectors, dense, keyword
        by_doc: dict[str, list[int]] = {}
        for i, c in enumerate(chunks):
            by_doc.setdefault(c.doc_id, []).append(i)
        self._doc_positions = {d: np.array(v, dtype=np.int64) for d, v in by_doc.items()}

    def document(self, doc_id):
        positions = self._doc_positions.get(doc_id, np.zeros(0, dtype=np.int64))
        return DocumentEntry(meta=self.manifest.documents[doc_id],
                             paragraphs=[p for p in self._paragraphs.values() if p.doc_id == doc_id],
                             chunks=[self._chunks[i] for i in positions],
                             vectors=self._vectors[positions])

    def paragraph(self, paragraph_id):
        return self._paragraphs[paragraph_id]

    def paragraphs(self):
        return list(self._paragraphs.values())

    def chunk(self, position):
        return self._chunks[position]

    def __len__(self):
        return len(self._chunks)

    def _allowed(self, doc_ids: set[str] | None) -> np.ndarray | None:
        if doc_ids is None:
            return None
        parts = [self._doc_positions[d] for d in doc_ids if d in self._doc_positions]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def dense_search(self, vector, n, doc_ids=None):
        import faiss
        allowed = self._allowed(doc_ids)
        n = min(n, len(self._chunks) if allowed is None else len(allowed))
        if n == 0:
            return []
        query = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        params = None if allowed is None else faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
        scores, ids = self._dense.search(query, n, params=params)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    def keyword_search(self, tokens, n, doc_ids=None):
        if self._keyword is None or not tokens:
            return []
        allowed = self._allowed(doc_ids)
        mask = None
        if allowed is not None:
            mask = np.zeros(len(self._chunks), dtype=np.float32)
            mask[allowed] = 1
        scores = self._keyword.get_scores(tokens, weight_mask=mask)
        top = np.argsort(-scores, kind="stable")[:n]
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]


class FileStore(Store):
    """An index folder: ``CURRENT`` names the live generation folder ``gen-N``.

    A write builds ``gen-N+1`` beside the live one and then swaps ``CURRENT`` with an
    atomic rename, so a process killed mid-write leaves the previous index in use. The
    generation before the live one is kept for readers that are still loading it.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._view: FileView | None = None
        self._load_lock = threading.Lock()

    def _current(self) -> str | None:
        try:
            return (self.root / "CURRENT").read_text().strip() or None
        except FileNotFoundError:
            return None

    def exists(self) -> bool:
        return self._current() is not None

    def view(self) -> FileView:
        """The live generation; reloaded when any process has written a new one."""
        gen = self._current()
        if gen is None:
            raise IndexStateError(f"no index at {self.root}; run `rag index` to build it")
        current = self._view
        if current is None or current.gen != gen:
            with self._load_lock:  # concurrent searches load a new generation once
                if self._view is None or self._view.gen != gen:
                    self._view = FileView(self.root, gen)
                current = self._view
        return current

    # -- writing --------------------------------------------------------------------
    def apply(self, manifest, upserts, deletions, replace_all=False):
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one writer at a time
            replaced = {e.meta["doc_id"] for e in upserts} | set(deletions)
            kept: list[DocumentEntry] = []
            if self.exists() and not replace_all:
                view = self.view()
                kept = [view.document(d) for d in view.manifest.documents if d not in replaced]
            entries = sorted(kept + list(upserts), key=lambda e: e.meta["doc_id"])
            manifest.documents = {e.meta["doc_id"]: e.meta for e in entries}
            self._write_generation(manifest, entries)

    def _write_generation(self, manifest: Manifest, entries: list[DocumentEntry]) -> None:
        import bm25s
        import faiss
        tmp = self.root / f"tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            paragraphs = [p for e in entries for p in e.paragraphs]
            chunks = [c for e in entries for c in e.chunks]
            vectors = (np.concatenate([e.vectors for e in entries]).astype(np.float32)
                       if entries else np.zeros((0, manifest.dim), dtype=np.float32))
            _write_jsonl(tmp / "paragraphs.jsonl", (p.to_dict() for p in paragraphs))
            _write_jsonl(tmp / "chunks.jsonl", (c.to_dict() for c in chunks))
            with open(tmp / "vectors.npy", "wb") as fh:
                np.save(fh, vectors)
            dense = faiss.IndexFlatIP(manifest.dim)  # inner product on unit vectors = cosine
            if len(vectors):
                dense.add(vectors)
            faiss.write_index(dense, str(tmp / "dense.faiss"))
            if chunks:
                keyword = bm25s.BM25()
                keyword.index([tokenize(c.indexed_text) for c in chunks], show_progress=False)
                keyword.save(str(tmp / "bm25"), show_progress=False)
            # The manifest goes last: a generation folder without one is never complete.
            (tmp / "manifest.json").write_text(json.dumps(manifest.to_dict(), ensure_ascii=False, indent=1),
                                               encoding="utf-8")
            _fsync_tree(tmp)
            previous = self._current()
            number = int(previous.split("-")[1]) + 1 if previous else 1
            gen = f"gen-{number:06d}"
            os.rename(tmp, self.root / gen)
            pointer = self.root / f"CURRENT.{uuid.uuid4().hex[:8]}"
            pointer.write_text(gen)
            _fsync_file(pointer)
            os.replace(pointer, self.root / "CURRENT")  # the commit point
            _fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._collect_garbage(keep={gen, previous})

    def _collect_garbage(self, keep: set[str | None]) -> None:
        for child in self.root.iterdir():
            if child.is_dir() and child.name.startswith(("gen-", "tmp-")) and child.name not in keep:
                shutil.rmtree(child, ignore_errors=True)


def _write_jsonl(path: Path, rows) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            _fsync_file(path)
    for path in [*folder.rglob("*"), folder]:
        if path.is_dir():
            _fsync_dir(path)
