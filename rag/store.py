"""Index storage behind a small interface.

``Store`` is what the indexer writes and the retriever reads: chunks with their vectors
(dense search) and their tokens (keyword search), the citable paragraphs, and a manifest.
``FileStore`` keeps them in one folder. A server-backed store (Qdrant, Milvus, OpenSearch)
implements the same methods for corpora beyond one machine:

* ``exists()``, ``view()``, ``manifest()``: reading, never writing, never blocking;
* ``writing(timeout)``: the one-writer-at-a-time lock that the indexer holds around its
  whole read-plan-write cycle (re-entrant within a thread);
* ``apply(manifest, upserts, deletions, replace_all)``: one all-or-nothing change;
* ``salvage()``: what a damaged index still records and holds, for ``rag index --repair``;
* ``documents(ids)``: the stored entries of a few documents (their vectors are reused when
  they change), without loading the whole index where the store can;
* ``configure(config)``: store-specific tunables.

The folder layout of ``FileStore`` (format 2)::

    CURRENT                      the name of the live generation, e.g. "gen-000012"
    .lock                        the writers' lock; holds the pid of the writer holding it
    gen-000012/manifest.json     documents, their placement in segments, and the size and
    gen-000012/manifest.copy.json  SHA-256 of every segment file; checksummed; two copies
    segments/seg-<id>/           immutable: chunks.jsonl, paragraphs.jsonl, vectors.npy,
                                 terms.json + postings.npz (BM25 term counts)

A write adds one segment holding the new documents' chunks and a new generation that
places those documents there; a replaced or removed document stays in its old segment
as a tombstone (the placement no longer points there) until compaction rewrites that
segment. So adding one document writes that document and a manifest, not the index.

Reading costs a few numbers per chunk, whatever the corpus: a view verifies every file's
checksum when it opens (streamed), then memory-maps the vectors (searched in place by
faiss.knn, or held once inside an HNSW graph) and the term counts (a query reads its terms'
postings), and reads chunk and paragraph texts from the files, by the line offsets found
while verifying, only for what a search returns. BM25 is scored over the query terms'
postings with MaxScore pruning (FileView.keyword_search), equal to scoring every chunk.

BM25 across segments: each segment stores raw term counts and chunk lengths, and the view
computes the statistics (document frequency, average length, live chunk count) over the
live chunks of all segments when it scores, so the scores are those of one BM25 index over
the live chunks, whatever the segmentation; storing precomputed per-segment scores would
freeze each segment's IDF at write time.

The commit protocol (each step is a named fault point, see ``_fault_point``): the segment
is written in ``segments/tmp-…``, fsynced and renamed; the generation's manifest is
written in ``tmp-…``, fsynced and renamed to the next free ``gen-N``; then ``CURRENT`` is
replaced atomically (the commit point) and older generations and unreferenced segments
are retired. A process killed at any step leaves the previous generation current; the
next writer removes what it left behind, with a log line.
"""
from __future__ import annotations

import bisect
import contextlib
import contextvars
import fcntl
import functools
import hashlib
import io
import json
import logging
import mmap
import os
import re
import shutil
import signal
import struct
import sys
import threading
import time
import uuid
import weakref
import zipfile
from abc import ABC, abstractmethod
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .chunking import Chunk
from .documents import Paragraph
from .tokenize import tokenize

FORMAT_VERSION = 2
log = logging.getLogger("rag.index")

REPAIR = "run `rag index --repair` (it rebuilds from the documents recorded in the index; nothing is lost)"
_GEN = re.compile(r"gen-(\d{6})")
_SEG = re.compile(r"seg-[0-9a-f]{12}")
MANIFEST_FILES = ("manifest.json", "manifest.copy.json")
DEFAULT_MAX_SEGMENTS = 8
# A writer hashes the kept segments' files up to this size (about 10 ms each); hashing a
# 10^5-chunk segment's 300 MB on every small write would be most of its cost.
WRITER_HASH_MAX_BYTES = 16 * 2**20
BM25_K1, BM25_B = 1.5, 0.75  # bm25s' defaults (Lucene variant), which this index used before


class IndexStateError(RuntimeError):
    """An index that cannot be used as it is; the message names the fix."""


class IndexBusy(IndexStateError):
    """Another process is writing the index and did not finish within the timeout."""


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


@dataclass
class Salvage:
    """What a (possibly damaged) index still records and holds."""
    manifest: Manifest | None  # the newest readable record of the indexed documents
    entries: dict[str, DocumentEntry]  # documents whose stored data verified
    problems: list[str]  # what could not be read, one message each


class IndexView(ABC):
    """A consistent, read-only view of one version of the index.

    A search reads everything through one view, so an index write that lands meanwhile
    (another process, or an upload in the UI) cannot mix two versions in one answer.
    Chunk positions are the view's own numbering, stable for the view's lifetime.
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
    def __len__(self) -> int:
        """The number of chunks of the indexed documents."""

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
    def exists(self) -> bool:
        """Whether the index has been written (even if it is damaged now)."""

    @abstractmethod
    def view(self) -> IndexView:
        """The current version; raises IndexStateError when there is none or it is damaged."""

    @abstractmethod
    def writing(self, timeout: float) -> contextlib.AbstractContextManager:
        """Hold the writers' lock (inter-process; re-entrant in a thread); IndexBusy after
        ``timeout`` seconds, naming the holder. Readers never take it."""

    @abstractmethod
    def apply(self, manifest: Manifest, upserts: list[DocumentEntry], deletions: list[str],
              replace_all: bool = False) -> None:
        """Add or replace the given documents and delete others, all or nothing.
        ``replace_all``: the index holds exactly ``upserts`` afterwards (a rebuild).
        Takes the writers' lock if the caller does not hold it."""

    @abstractmethod
    def salvage(self) -> Salvage:
        """The documents the newest readable manifest records, and those of them whose
        stored data is intact; for a repair. Never raises for damage."""

    def manifest(self) -> Manifest:
        return self.view().manifest

    def documents(self, doc_ids: set[str]) -> dict[str, DocumentEntry]:
        """The stored entries of the given documents (those indexed), e.g. to reuse their
        vectors when they change. A store may read just these instead of the whole index."""
        view = self.view()
        return {d: view.document(d) for d in doc_ids if d in view.manifest.documents}

    def configure(self, config) -> None:
        """Store-specific tunables from the configuration (none by default)."""


# -- fault injection ---------------------------------------------------------------------
FAULT_POINTS = ("lock-acquired", "segment-partial", "segment-written", "segment-renamed",
                "generation-written", "current-written", "current-swapped", "retire-partial")


def _fault_point(name: str) -> None:
    """With RAG_FAULT_POINT=<name>, stop here (the fault-injection tests `kill -9` the
    process at each step of the commit protocol). A no-op otherwise."""
    if os.environ.get("RAG_FAULT_POINT") == name:
        print(f"RAG_FAULT_POINT {name} reached (pid {os.getpid()})", file=sys.stderr, flush=True)
        while True:
            signal.pause()


# -- checksummed files -------------------------------------------------------------------
def _damaged(path: Path, problem: str) -> IndexStateError:
    return IndexStateError(f"the index is damaged: {path} {problem}; {REPAIR}")


def _file_record(path: Path) -> dict:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return {"bytes": size, "sha256": h.hexdigest()}


def _verify_file(path: Path, expected: dict, read: bool) -> bytes | None:
    """The file's bytes (when ``read``) after checking its size and SHA-256 against the
    manifest; IndexStateError naming the file otherwise."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise _damaged(path, "is missing") from None
    except OSError as exc:
        raise _damaged(path, f"cannot be read ({exc.strerror or exc})") from None
    if size != expected["bytes"]:
        raise _damaged(path, f"has {size} bytes, the manifest records {expected['bytes']}")
    try:
        if read:
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
        else:
            data, digest = None, _file_record(path)["sha256"]
    except OSError as exc:
        raise _damaged(path, f"cannot be read ({exc.strerror or exc})") from None
    if digest != expected["sha256"]:
        raise _damaged(path, "does not match its checksum in the manifest (its content changed)")
    return data


def _open_verified(path: Path, expected: dict, lines: bool = False
                   ) -> tuple[io.BufferedReader, np.ndarray | None]:
    """The file, open, after checking its size and SHA-256 against the manifest (streamed:
    the file is not held in memory); with ``lines``, the byte offsets at which its lines
    start, then its end. IndexStateError naming the file otherwise."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise _damaged(path, "is missing") from None
    except OSError as exc:
        raise _damaged(path, f"cannot be read ({exc.strerror or exc})") from None
    try:
        size = os.fstat(fh.fileno()).st_size
        if size != expected["bytes"]:
            raise _damaged(path, f"has {size} bytes, the manifest records {expected['bytes']}")
        digest, ends, pos = hashlib.sha256(), [], 0
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
            if lines:
                ends.append(np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10) + pos)
            pos += len(block)
        if digest.hexdigest() != expected["sha256"]:
            raise _damaged(path, "does not match its checksum in the manifest (its content changed)")
    except OSError as exc:
        fh.close()
        raise _damaged(path, f"cannot be read ({exc.strerror or exc})") from None
    except BaseException:
        fh.close()
        raise
    if not lines:
        return fh, None
    starts = np.concatenate([np.zeros(1, dtype=np.int64)] + [e.astype(np.int64) + 1 for e in ends])
    if starts[-1] != size:  # a last line without its newline
        starts = np.append(starts, size)
    return fh, starts


def _npz_mmap(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz written by np.savez (members stored uncompressed), each
    memory-mapped where it lies in the file instead of read into memory."""
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as fh:
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                raise ValueError(f"{info.filename} is not an uncompressed array")
            fh.seek(info.header_offset)
            local = fh.read(30)
            if local[:4] != b"PK\x03\x04":
                raise ValueError(f"{info.filename}: no local header")
            name_length, extra_length = struct.unpack("<HH", local[26:30])
            start = info.header_offset + 30 + name_length + extra_length
            fh.seek(start)
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise ValueError(f"{info.filename}: .npy version {version}")
            data = fh.tell()
            count = int(np.prod(shape, dtype=np.int64))
            if dtype.hasobject or (fortran and len(shape) > 1) or data + count * dtype.itemsize > start + info.file_size:
                raise ValueError(f"{info.filename} does not fit its entry")
            key = info.filename[:-4]
            out[key] = (np.memmap(path, dtype=dtype, mode="r", offset=data, shape=shape) if count
                        else np.zeros(shape, dtype=dtype))
    return out


def _release(array: np.ndarray) -> None:
    """Drop a memory-mapped array's pages from this process's resident set (they stay in
    the page cache; the next access maps them again): after a scan at open, e.g."""
    m = getattr(array, "_mmap", None)
    if m is not None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            m.madvise(mmap.MADV_DONTNEED)


def _checksum(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


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


def _parse_jsonl(data: bytes) -> list:
    """The rows of a JSONL file, parsed as one JSON array (one C-level parse instead of one
    per line: 10^5 chunks load in a fraction of the time). JSON text holds no raw newline."""
    text = data.decode("utf-8").strip("\n")
    rows = json.loads("[" + text.replace("\n", ",") + "]") if text else []
    if not all(isinstance(r, dict) for r in rows):
        raise ValueError("a line is not a JSON object")
    return rows


def _write_jsonl(path: Path, rows) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


# -- BM25 term counts ---------------------------------------------------------------------
@dataclass
class Postings:
    """Term counts of a segment's chunks, by term (compressed sparse columns)."""
    terms: list[str]  # sorted
    indptr: np.ndarray  # len(terms)+1: term t's entries are [indptr[t], indptr[t+1])
    rows: np.ndarray  # chunk row of each entry
    counts: np.ndarray  # occurrences of the term in that chunk
    lengths: np.ndarray  # tokens per chunk

    @classmethod
    def from_tokens(cls, token_lists: list[list[str]]) -> "Postings":
        per_chunk = [Counter(tokens) for tokens in token_lists]
        terms = sorted({t for c in per_chunk for t in c})
        index = {t: i for i, t in enumerate(terms)}
        term_ids = [index[t] for c in per_chunk for t in c]
        rows = [r for r, c in enumerate(per_chunk) for _ in c]
        counts = [n for c in per_chunk for n in c.values()]
        return cls._build(terms, np.array(term_ids, dtype=np.int64), np.array(rows, dtype=np.int64),
                          np.array(counts, dtype=np.int32),
                          np.array([len(t) for t in token_lists], dtype=np.int32))

    @classmethod
    def _build(cls, terms, term_ids, rows, counts, lengths) -> "Postings":
        order = np.lexsort((rows, term_ids))
        term_ids, rows, counts = term_ids[order], rows[order], counts[order]
        indptr = np.searchsorted(term_ids, np.arange(len(terms) + 1)).astype(np.int64)
        return cls(list(terms), indptr, rows.astype(np.int32), counts.astype(np.int32),
                   np.asarray(lengths, dtype=np.int32))

    @classmethod
    def merge(cls, parts: list[tuple["Postings", np.ndarray]]) -> "Postings":
        """The postings of the given rows of each part, renumbered in order (compaction:
        term counts are carried over, the text is not tokenized again)."""
        terms = sorted({t for p, _ in parts for t in p.terms})
        all_terms = np.array(terms, dtype=object)
        term_ids, rows, counts, lengths = [], [], [], []
        offset = 0
        for p, keep in parts:
            new_row = np.full(len(p.lengths), -1, dtype=np.int64)
            new_row[keep] = offset + np.arange(len(keep))
            local_term = np.repeat(np.arange(len(p.terms)), np.diff(p.indptr))
            kept = new_row[p.rows] >= 0 if len(p.rows) else np.zeros(0, dtype=bool)
            global_of_local = np.searchsorted(all_terms, np.array(p.terms, dtype=object)) if p.terms else \
                np.zeros(0, dtype=np.int64)
            term_ids.append(global_of_local[local_term[kept]])
            rows.append(new_row[p.rows[kept]])
            counts.append(p.counts[kept])
            lengths.append(p.lengths[keep])
            offset += len(keep)
        cat = (lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dtype=dt))
        return cls._build(terms, cat(term_ids, np.int64), cat(rows, np.int64), cat(counts, np.int32),
                          cat(lengths, np.int32))

    def save(self, folder: Path) -> None:
        (folder / "terms.json").write_text(json.dumps(self.terms, ensure_ascii=False), encoding="utf-8")
        with open(folder / "postings.npz", "wb") as fh:
            np.savez(fh, indptr=self.indptr, rows=self.rows, counts=self.counts, lengths=self.lengths)

    @classmethod
    def open(cls, folder: Path, n_chunks: int) -> "Postings":
        """A segment's term counts: rows and counts memory-mapped from postings.npz (a query
        reads its terms' entries only), the small arrays in memory."""
        terms = json.loads((folder / "terms.json").read_text(encoding="utf-8"))
        arrays = _npz_mmap(folder / "postings.npz")
        p = cls(terms, np.array(arrays["indptr"]), arrays["rows"], arrays["counts"], np.array(arrays["lengths"]))
        if (not isinstance(terms, list) or len(p.indptr) != len(terms) + 1 or len(p.lengths) != n_chunks
                or len(p.rows) != len(p.counts) or (len(p.indptr) and p.indptr[-1] != len(p.rows))
                or (len(p.rows) and (p.rows.min() < 0 or p.rows.max() >= n_chunks))):
            raise ValueError("term counts do not fit the segment's chunks")
        _release(p.rows)
        return p


# -- the FAISS part ------------------------------------------------------------------------
# Above ``hnsw_above`` chunks a segment's dense index is an HNSW graph instead of flat
# (config faiss_hnsw_above, hnsw_m, hnsw_ef_search, hnsw_ef_construction; set by
# FileStore.configure). Recall@10 against flat and the times: bench/README.md.
HNSW_FROM_CONFIG = True
DENSE = {"hnsw_above": 200_000, "m": 32, "ef_search": 128, "ef_construction": 200}
# The settings of the store whose view is being loaded (two stores in one process may
# differ); a segment loaded outside a view (compaction, repair) gets the defaults.
_dense_settings: contextvars.ContextVar[dict] = contextvars.ContextVar("dense_settings", default=DENSE)
_omp_lock = threading.Lock()
_omp_users = 0
_omp_saved = 1


def build_dense_index(vectors: np.ndarray, dim: int, folder: Path | None = None):
    """The FAISS index of one segment: exact inner product (on unit vectors, the cosine),
    cheap to rebuild from vectors.npy, so not stored; above ``hnsw_above`` chunks
    an HNSW graph, which is not cheap: it is kept in ``folder`` (the segment's, beside its
    files; derived data outside the checksummed manifest) and rebuilt if it is missing or
    does not fit the vectors."""
    import faiss
    settings = _dense_settings.get()
    if len(vectors) <= settings["hnsw_above"]:
        return FlatVectors(vectors)
    m, ef_construction = int(settings["m"]), int(settings["ef_construction"])
    path = folder / f"dense-hnsw-m{m}-efc{ef_construction}.faiss" if folder is not None else None
    dense = None
    if path is not None and path.exists():
        try:
            dense = faiss.read_index(str(path))
            if not isinstance(dense, faiss.IndexHNSWFlat) or dense.ntotal != len(vectors) or dense.d != dim:
                dense = None
        except RuntimeError:  # FAISS's error for an unreadable file
            dense = None
    if dense is None:
        dense = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
        dense.hnsw.efConstruction = ef_construction
        dense.add(np.ascontiguousarray(vectors, dtype=np.float32))
        _release(vectors)  # the graph holds its own copy
        if path is not None:
            tmp = path.with_name(f"tmp-{uuid.uuid4().hex[:8]}-{path.name}")
            try:
                faiss.write_index(dense, str(tmp))
                os.replace(tmp, path)
            except (OSError, RuntimeError):  # a read-only index: the graph stays in memory
                tmp.unlink(missing_ok=True)
    dense.hnsw.efSearch = int(settings["ef_search"])
    return dense


class FlatVectors:
    """A segment's exact dense index: inner products over its memory-mapped vectors by
    ``faiss.knn`` (the routine IndexFlatIP.search runs), so the vectors are not copied
    into an index; a filter scores the allowed rows (in blocks, copied)."""

    BLOCK = 65_536

    def __init__(self, vectors: np.ndarray):
        self.vectors = vectors
        self.ntotal, self.d = vectors.shape

    def search(self, query: np.ndarray, k: int, rows: np.ndarray | None = None):
        import faiss
        if rows is None:
            return faiss.knn(query, self.vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
        scores, ids = [], []
        for b in range(0, len(rows), self.BLOCK):
            part = rows[b:b + self.BLOCK]
            d, i = faiss.knn(query, np.ascontiguousarray(self.vectors[part]), min(k, len(part)),
                             metric=faiss.METRIC_INNER_PRODUCT)
            found = i[0] >= 0
            scores.append(d[0][found])
            ids.append(part[i[0][found]])
        if len(scores) == 1:
            return scores[0][None], ids[0][None]
        scores, ids = np.concatenate(scores), np.concatenate(ids)
        best = np.lexsort((ids, -scores))[:k]  # ties: the earlier row, as faiss's heap keeps
        return scores[best][None], ids[best][None]


@contextlib.contextmanager
def one_omp_thread():
    """FAISS on one OpenMP thread for the duration (one query gains nothing from more on
    2 cores, and lost 3–30× to their spinning when the cores are busy); the previous
    count is restored when the last concurrent query ends, for batch work."""
    import faiss
    global _omp_users, _omp_saved
    with _omp_lock:
        if _omp_users == 0:
            _omp_saved = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)
        _omp_users += 1
    try:
        yield
    finally:
        with _omp_lock:
            _omp_users -= 1
            if _omp_users == 0:
                faiss.omp_set_num_threads(_omp_saved)


# -- segments ------------------------------------------------------------------------------
def _close_files(files: list) -> None:
    for fh in files:
        with contextlib.suppress(OSError):
            fh.close()


class Segment:
    """One immutable segment, verified when opened. What a view keeps of it is small: the
    vectors and the BM25 term counts are memory-mapped from its files (a query reads the
    pages it needs; the vectors are held once, by the page cache, or once inside an HNSW
    graph), and its chunks and paragraphs are read from its files when asked for, by the
    line offsets found while its checksum was verified. So a view costs a few numbers per
    chunk, not the chunk's texts as Python objects."""

    def __init__(self, folder: Path, vectors: np.ndarray, postings: Postings, files: dict,
                 lines: dict[str, np.ndarray], rows: dict[str, list[int]]):
        self.name, self.folder = folder.name, folder
        self.vectors, self.postings = vectors, postings
        self._files, self._lines = files, lines  # open file objects, line offsets
        self.rows = rows  # doc_id → [first chunk, chunks, first paragraph, paragraphs]
        self.size = len(lines["chunks.jsonl"]) - 1  # chunks
        self.paragraph_count = len(lines["paragraphs.jsonl"]) - 1
        self.dense = None
        self.term_index = {t: i for i, t in enumerate(postings.terms)}
        self._finalizer = weakref.finalize(self, _close_files, list(files.values()))

    @classmethod
    def load(cls, folder: Path, info: dict, dim: int, dense: bool = True) -> "Segment":
        """The segment verified (every file's size and SHA-256, streamed: nothing is held
        in memory for it). ``dense=False``: without its FAISS index (compaction, repair)."""
        files: dict[str, io.BufferedReader] = {}
        try:
            lines: dict[str, np.ndarray] = {}
            for name, expected in info["files"].items():
                path = folder / name
                fh, starts = _open_verified(path, expected, lines=name.endswith(".jsonl"))
                if starts is not None:
                    files[name], lines[name] = fh, starts
                else:
                    fh.close()
            for name in ("chunks.jsonl", "paragraphs.jsonl", "vectors.npy", "terms.json", "postings.npz"):
                if name not in info["files"]:
                    raise _damaged(folder / name, "is not recorded in the manifest")
            n = len(lines["chunks.jsonl"]) - 1
            try:
                vectors = np.load(folder / "vectors.npy", mmap_mode="r" if n else None, allow_pickle=False)
                if vectors.shape != (n, dim) or vectors.dtype != np.float32:
                    raise ValueError(f"shape {vectors.shape} {vectors.dtype}, expected ({n}, {dim}) float32")
            except (ValueError, OSError) as exc:
                raise _damaged(folder / "vectors.npy", f"cannot be used ({exc})") from None
            try:
                postings = Postings.open(folder, n)
            except (ValueError, OSError, KeyError, TypeError) as exc:
                raise _damaged(folder / "postings.npz", f"cannot be used ({exc})") from None
            rows = info.get("rows")
            segment = cls(folder, vectors, postings, files, lines, rows or {})
            if rows is None:  # written before the manifest recorded each document's rows
                segment.rows = _document_rows(segment.chunks, segment.paragraphs)
            segment._check_rows()
        except BaseException:
            _close_files(list(files.values()))
            raise
        if dense:
            segment.dense = build_dense_index(vectors, dim, folder)
        return segment

    def _check_rows(self) -> None:
        """The manifest's rows of each document fit the files; each chunk row's document."""
        self.docs = sorted(self.rows, key=lambda d: self.rows[d][0])
        self._chunk_doc = np.full(self.size, -1, dtype=np.int32)
        chunks = paragraphs = 0
        for i, d in enumerate(self.docs):
            c0, nc, p0, np_ = (int(v) for v in self.rows[d])
            if min(c0, nc, p0, np_) < 0 or c0 + nc > self.size or p0 + np_ > self.paragraph_count:
                raise _damaged(self.folder, f"does not hold the rows the manifest records for {d}")
            self._chunk_doc[c0:c0 + nc] = i
            chunks, paragraphs = chunks + nc, paragraphs + np_
        if chunks != self.size or paragraphs != self.paragraph_count or (self._chunk_doc < 0).any():
            raise _damaged(self.folder, "holds rows the manifest does not place")

    def _read(self, name: str, start: int, stop: int) -> list[dict]:
        if start >= stop:
            return []
        lines = self._lines[name]
        lo, hi = int(lines[start]), int(lines[stop])
        try:
            data = os.pread(self._files[name].fileno(), hi - lo, lo)
            if len(data) != hi - lo:
                raise ValueError("shorter than when it was opened")
            return _parse_jsonl(data)
        except (OSError, ValueError) as exc:
            raise _damaged(self.folder / name, f"cannot be parsed ({exc})") from None

    def read_chunks(self, start: int, stop: int) -> list[Chunk]:
        """Chunks ``start``..``stop`` of the segment, read from chunks.jsonl."""
        try:
            chunks = [Chunk(**row) for row in self._read("chunks.jsonl", start, stop)]
        except TypeError as exc:
            raise _damaged(self.folder / "chunks.jsonl", f"cannot be parsed ({exc})") from None
        for i, c in enumerate(chunks, start):
            if c.doc_id != self.docs[self._chunk_doc[i]]:
                raise _damaged(self.folder / "chunks.jsonl", "holds rows of another document")
        return chunks

    def read_paragraphs(self, start: int, stop: int) -> list[Paragraph]:
        try:
            return [Paragraph.from_dict(row) for row in self._read("paragraphs.jsonl", start, stop)]
        except (TypeError, KeyError) as exc:
            raise _damaged(self.folder / "paragraphs.jsonl", f"cannot be parsed ({exc})") from None

    @functools.cached_property
    def chunks(self) -> list[Chunk]:
        """All the segment's chunks (compaction and repair read the whole segment)."""
        return self.read_chunks(0, self.size) if self.rows else \
            [Chunk(**row) for row in self._read("chunks.jsonl", 0, self.size)]

    @functools.cached_property
    def paragraphs(self) -> list[Paragraph]:
        return self.read_paragraphs(0, self.paragraph_count)

    @staticmethod
    def verify(folder: Path, info: dict, hash_all: bool = False) -> None:
        """What a writer checks of a segment it keeps: every file's size, and the checksum
        of files up to WRITER_HASH_MAX_BYTES. A larger file is not read: its recorded
        checksum is carried into the new manifest unchanged, so damage to it can never be
        written down as valid, and every reader (which hashes what it loads) reports it."""
        for name, expected in info["files"].items():
            path = folder / name
            if hash_all or expected["bytes"] <= WRITER_HASH_MAX_BYTES:
                _verify_file(path, expected, read=False)
            else:
                try:
                    size = path.stat().st_size
                except OSError:
                    raise _damaged(path, "is missing") from None
                if size != expected["bytes"]:
                    raise _damaged(path, f"has {size} bytes, the manifest records {expected['bytes']}")


def _write_segment(segments_dir: Path, chunks: list[Chunk], paragraphs: list[Paragraph],
                   vectors: np.ndarray, postings: Postings) -> tuple[str, dict]:
    """Write one segment (temporary folder, fsync, rename); its name and manifest record."""
    segments_dir.mkdir(parents=True, exist_ok=True)
    name = f"seg-{uuid.uuid4().hex[:12]}"
    tmp = segments_dir / f"tmp-{name}"
    tmp.mkdir()
    try:
        _write_jsonl(tmp / "chunks.jsonl", (c.to_dict() for c in chunks))
        _write_jsonl(tmp / "paragraphs.jsonl", (p.to_dict() for p in paragraphs))
        _fault_point("segment-partial")
        with open(tmp / "vectors.npy", "wb") as fh:
            np.save(fh, np.ascontiguousarray(vectors, dtype=np.float32))
        postings.save(tmp)
        _fsync_tree(tmp)
        files = {p.name: _file_record(p) for p in sorted(tmp.iterdir())}
        rows = _document_rows(chunks, paragraphs)
        _fault_point("segment-written")
        os.rename(tmp, segments_dir / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(segments_dir)
    _fault_point("segment-renamed")
    return name, {"files": files, "chunks": len(chunks), "rows": rows}


def _document_rows(chunks: list[Chunk], paragraphs: list[Paragraph]) -> dict[str, list[int]]:
    """Where each document's chunks and paragraphs lie in a segment's files:
    doc_id → [first chunk, chunks, first paragraph, paragraphs]. A document's rows are
    contiguous (segments are written document by document), so one document can be read
    without parsing the rest of the segment."""
    rows: dict[str, list[int]] = {}
    for column, items in ((0, chunks), (2, paragraphs)):
        for i, item in enumerate(items):
            entry = rows.setdefault(item.doc_id, [0, 0, 0, 0])
            if entry[column + 1] == 0:
                entry[column] = i
            elif entry[column] + entry[column + 1] != i:
                raise ValueError(f"{item.doc_id}: rows not contiguous in the segment")
            entry[column + 1] += 1
    return rows


# -- reading -------------------------------------------------------------------------------
class _Cache:
    """The last ``size`` values read, by key (thread-safe; no reference back to the view,
    so a view is freed, and its segments' files closed, as soon as nothing uses it)."""

    def __init__(self, size: int):
        self.size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key, read):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = read(key)
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


class FileView(IndexView):
    """One generation: its manifest, and per chunk a few numbers (its document's rank,
    whether it is live, its BM25 length norm); vectors and term counts stay memory-mapped
    in the segments' files and texts are read from them for the chunks a search returns."""

    CHUNK_CACHE = 16_384  # chunks kept parsed (a query reads ~100: its fused candidates)
    DOCUMENT_CACHE = 256  # documents whose paragraphs are kept parsed
    # BM25: when the candidates are more than this fraction of a segment, its chunks are
    # scored at once (postings walked) rather than looked up candidate by candidate.
    SCORE_WHOLE_SEGMENT_ABOVE = 0.125
    # Above this many live chunks BM25 is approximate, as HNSW is for the dense ranking:
    # candidates come from each term's champion list (its CHAMPIONS chunks of highest
    # tf/(tf + norm) per segment; Manning, Raghavan & Schütze, IR §7.1.3), the best
    # CHAMPION_CANDIDATES × n of them by their champion-list score are scored exactly over
    # all terms. Below, BM25 is exact (MaxScore). bench/README.md: its recall against exact.
    BM25_EXACT_MAX_CHUNKS = 1_000_000
    CHAMPIONS = 8_000
    CHAMPION_CANDIDATES = 4

    def __init__(self, root: Path, gen: str, record: dict):
        self.gen, self.record = gen, record
        self.stamp: tuple | None = None  # the manifest file's identity when loaded
        self.manifest = Manifest.from_dict(record)
        placement: dict[str, str] = record["placement"]
        self.segments = [Segment.load(root / "segments" / name, info, self.manifest.dim)
                         for name, info in record["segments"].items()]
        # Ties are broken by document id, then by position (a document's chunks are in its
        # order within its segment), so a ranking does not depend on which segment holds what.
        rank_of = {d: i for i, d in enumerate(sorted(placement))}
        self._offsets: list[int] = []
        self._doc_range: dict[str, tuple[int, int, int]] = {}  # doc → (segment, first position, chunks)
        live, order = [], []
        total = 0
        for s, segment in enumerate(self.segments):
            self._offsets.append(total)
            mask = np.zeros(segment.size, dtype=bool)
            ranks = np.full(segment.size, len(rank_of), dtype=np.int64)
            for d, (c0, nc, _, _) in segment.rows.items():
                ranks[c0:c0 + nc] = rank_of.get(d, len(rank_of))
                if placement.get(d) == segment.name:
                    mask[c0:c0 + nc] = True
                    self._doc_range[d] = (s, total + c0, nc)
            live.append(mask)
            order.append(ranks)
            total += segment.size
        self._total = total
        self._live = np.concatenate(live) if live else np.zeros(0, dtype=bool)
        self._doc_order = np.concatenate(order) if order else np.zeros(0, dtype=np.int64)
        # Per segment: None when every chunk is live, else its live rows and each term's
        # live document frequency (tombstones of replaced documents do not count).
        self._live_rows: list[np.ndarray | None] = []
        self._live_df: list[np.ndarray | None] = []
        for segment, mask in zip(self.segments, live):
            if mask.all():
                self._live_rows.append(None)
                self._live_df.append(None)
                continue
            self._live_rows.append(np.flatnonzero(mask))
            p = segment.postings
            cum = np.concatenate([[0], np.cumsum(mask[np.asarray(p.rows)], dtype=np.int64)])
            self._live_df.append(cum[p.indptr[1:]] - cum[p.indptr[:-1]])
            _release(p.rows)
        missing = [d for d in self.manifest.documents if d not in placement]
        if missing:
            raise _damaged(root / gen / "manifest.json", f"places no chunks for {', '.join(missing[:3])}")
        lengths = (np.concatenate([s.postings.lengths for s in self.segments]) if self.segments else
                   np.zeros(0, dtype=np.int32)).astype(np.float64)
        self._live_count = int(self._live.sum())
        self._avg_length = float(lengths[self._live].mean()) if self._live_count else 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            self._norm = BM25_K1 * (1 - BM25_B + BM25_B * lengths / self._avg_length)
        # The postings as plain arrays over the same mapped pages (slicing a np.memmap costs
        # more than the slice), and each term's largest tf/(tf + norm): its BM25 bound per idf.
        self._postings = [(np.asarray(s.postings.rows).view(np.ndarray), np.asarray(s.postings.counts).view(np.ndarray))
                          for s in self.segments]
        self._max_impact = [self._impacts(s, offset) for s, offset in zip(self.segments, self._offsets)]
        self._champions: list[dict[int, tuple[np.ndarray, np.ndarray]]] | None = None
        if self._live_count > self.BM25_EXACT_MAX_CHUNKS:
            self._champions = [self._champion_lists(s, offset) for s, offset in zip(self.segments, self._offsets)]
        self._chunks = _Cache(self.CHUNK_CACHE)
        self._paragraph_cache = _Cache(self.CHUNK_CACHE)
        self._document_cache = _Cache(self.DOCUMENT_CACHE)

    def _document_paragraphs(self, doc_id: str) -> dict[int, Paragraph]:
        return self._document_cache.get(doc_id, self._read_paragraphs)

    def _champion_lists(self, segment: Segment, offset: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """term → (rows ascending, counts) of its CHAMPIONS live chunks of highest
        tf/(tf + norm), for the terms of the segment in more chunks than that."""
        p, r = segment.postings, self.CHAMPIONS
        norm = self._norm[offset:offset + segment.size]
        live = self._live[offset:offset + segment.size]
        out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for t in np.flatnonzero(np.diff(p.indptr) > r):
            lo, hi = int(p.indptr[t]), int(p.indptr[t + 1])
            rows, tf = np.asarray(p.rows[lo:hi]), np.asarray(p.counts[lo:hi])
            impact = np.where(live[rows], tf / (tf + norm[rows]), -1.0)
            best = np.sort(np.argpartition(-impact, r)[:r])
            best = best[impact[best] >= 0]
            out[int(t)] = (np.ascontiguousarray(rows[best]), np.ascontiguousarray(tf[best]))
        _release(p.rows)
        _release(p.counts)
        return out

    def _impacts(self, segment: Segment, offset: int, block: int = 1 << 22) -> np.ndarray:
        """Per term of the segment, the largest tf/(tf + norm) of its chunks (tombstones
        included: a bound), read block by block; the pages read are released after."""
        p = segment.postings
        best = np.zeros(len(p.terms), dtype=np.float64)
        if not len(p.rows) or not self._live_count:
            return best
        norm = self._norm[offset:offset + segment.size]
        indptr = p.indptr
        nonempty = np.flatnonzero(np.diff(indptr) > 0)
        for lo in range(0, len(p.rows), block):
            hi = min(lo + block, len(p.rows))
            tf = np.asarray(p.counts[lo:hi], dtype=np.float64)
            impact = tf / (tf + norm[np.asarray(p.rows[lo:hi])])
            # the terms with entries in [lo, hi): each one's maximum over its part of the block
            ts = nonempty[(indptr[nonempty + 1] > lo) & (indptr[nonempty] < hi)]
            best[ts] = np.maximum(best[ts], np.maximum.reduceat(impact, np.maximum(indptr[ts], lo) - lo))
        _release(p.rows)
        _release(p.counts)
        return best

    def _locate(self, position: int) -> tuple[Segment, int]:
        s = bisect.bisect_right(self._offsets, position) - 1
        return self.segments[s], position - self._offsets[s]

    def _read_chunk(self, position: int) -> Chunk:
        if not 0 <= position < self._total:
            raise IndexError(f"chunk position {position} out of range")
        segment, row = self._locate(position)
        return segment.read_chunks(row, row + 1)[0]

    def _read_paragraph(self, doc_id: str, number: int) -> Paragraph | None:
        """One paragraph of a live document: its line is read when the document's
        paragraphs are in number order from 1 (as written), else the document's lines."""
        name = self.record["placement"].get(doc_id)
        for segment in self.segments:
            if segment.name == name and doc_id in segment.rows:
                _, _, p0, np_ = segment.rows[doc_id]
                if 1 <= number <= np_:
                    found = segment.read_paragraphs(p0 + number - 1, p0 + number)[0]
                    if found.doc_id == doc_id and found.number == number:
                        return found
                return self._document_paragraphs(doc_id).get(number)
        return None

    def _read_paragraphs(self, doc_id: str) -> dict[int, Paragraph]:
        """A live document's paragraphs by number, read from its segment."""
        name = self.record["placement"].get(doc_id)
        for segment in self.segments:
            if segment.name == name and doc_id in segment.rows:
                _, _, p0, np_ = segment.rows[doc_id]
                return {p.number: p for p in segment.read_paragraphs(p0, p0 + np_)}
        return {}

    def document(self, doc_id):
        meta = self.manifest.documents[doc_id]
        paragraphs = sorted(self._document_paragraphs(doc_id).values(), key=lambda p: p.number)
        if doc_id in self._doc_range and self._doc_range[doc_id][2]:
            s, first, count = self._doc_range[doc_id]
            segment, row = self.segments[s], first - self._offsets[s]
            chunks = segment.read_chunks(row, row + count)
            vectors = np.array(segment.vectors[row:row + count], dtype=np.float32)
        else:
            chunks, vectors = [], np.zeros((0, self.manifest.dim), dtype=np.float32)
        return DocumentEntry(meta=meta, paragraphs=paragraphs, chunks=chunks, vectors=vectors)

    def paragraph(self, paragraph_id):
        doc_id, _, number = paragraph_id.rpartition("#")
        found = self._paragraph_cache.get(paragraph_id, lambda _: self._read_paragraph(doc_id, int(number))
                                          if number.isdigit() else None)
        if found is None:
            raise KeyError(paragraph_id)
        return found

    def paragraphs(self):
        """Every live paragraph (reads them all: for tools, not for searches)."""
        found: dict[str, Paragraph] = {}
        placement = self.record["placement"]
        for segment in self.segments:
            for p in segment.read_paragraphs(0, segment.paragraph_count):
                if placement.get(p.doc_id) == segment.name:
                    found[p.id] = p
        return list(found.values())

    def chunk(self, position):
        return self._chunks.get(int(position), self._read_chunk)

    def __len__(self):
        return self._live_count

    def _allowed(self, doc_ids: set[str] | None) -> np.ndarray:
        """A mask of the searchable positions: live, and of the given documents if any."""
        if doc_ids is None:
            return self._live
        mask = np.zeros(self._total, dtype=bool)
        for d in doc_ids:
            if d in self._doc_range:
                _, first, count = self._doc_range[d]
                mask[first:first + count] = True
        return mask

    def _searchable_rows(self, s: int, doc_ids: set[str] | None, allowed: np.ndarray | None) -> np.ndarray | None:
        """The rows of segment ``s`` a search may return; None when all of them."""
        if doc_ids is None:
            return self._live_rows[s]
        offset, size = self._offsets[s], self.segments[s].size
        return np.flatnonzero(allowed[offset:offset + size])

    def dense_search(self, vector, n, doc_ids=None):
        import faiss
        allowed = self._allowed(doc_ids) if doc_ids is not None else None
        query = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        found: list[tuple[int, float]] = []
        for s, (segment, offset) in enumerate(zip(self.segments, self._offsets)):
            local = self._searchable_rows(s, doc_ids, allowed)
            m = min(n, segment.size if local is None else len(local))
            if m == 0:
                continue
            if not isinstance(segment.dense, faiss.IndexHNSW):  # FlatVectors
                with one_omp_thread():
                    scores, ids = segment.dense.search(query, m, rows=local)
            else:
                params = None
                if local is not None:
                    # A filter on a graph: few allowed chunks are scored exactly (the graph's
                    # walk would mostly meet excluded ones), many through the graph with a selector.
                    if len(local) <= 50_000:
                        scores = segment.vectors[local] @ query[0]
                        top = np.argsort(-scores, kind="stable")[:m]
                        found.extend((offset + int(local[i]), float(scores[i])) for i in top)
                        continue
                    params = faiss.SearchParametersHNSW(sel=faiss.IDSelectorBatch(local.astype(np.int64)),
                                                        efSearch=max(segment.dense.hnsw.efSearch, m))
                with one_omp_thread():
                    scores, ids = segment.dense.search(query, m, params=params)
            found.extend((offset + int(i), float(sc)) for i, sc in zip(ids[0], scores[0]) if i >= 0)
        found.sort(key=lambda r: (-r[1], int(self._doc_order[r[0]]), r[0]))
        return found[:n]

    # BM25 over the query terms' postings only, with MaxScore pruning (Turtle & Flood 1995):
    # terms are taken highest bound first as the generators of candidates; once the bounds
    # of the terms not taken sum to less than the n-th best candidate score, a chunk holding
    # none of the taken terms cannot enter the top n, so the common terms' long postings are
    # only looked up for the candidates, never walked. A term's bound is its idf times the
    # largest tf/(tf + norm) among its chunks (computed when the view opens). Each
    # candidate's score is the full BM25 sum, added term by term in the query's order, so
    # scores and ranking are those of scoring every chunk (tests/test_scale.py checks both).
    def keyword_search(self, tokens, n, doc_ids=None):
        if not tokens or not self._live_count or n <= 0:
            return []
        allowed = self._allowed(doc_ids) if doc_ids is not None else None
        terms: dict[str, tuple[float, dict[int, tuple[int, int]]]] = {}  # token → (idf, segment → slice)
        bound: dict[str, float] = {}
        for token in dict.fromkeys(tokens):
            slices, df, impact = {}, 0, 0.0
            for s, segment in enumerate(self.segments):
                t = segment.term_index.get(token)
                if t is None:
                    continue
                lo, hi = int(segment.postings.indptr[t]), int(segment.postings.indptr[t + 1])
                live_df = hi - lo if self._live_df[s] is None else int(self._live_df[s][t])
                if live_df:
                    slices[s], df = (lo, hi), df + live_df
                    impact = max(impact, float(self._max_impact[s][t]))
            if df:
                idf = np.log(1 + (self._live_count - df + 0.5) / (df + 0.5))
                terms[token], bound[token] = (idf, slices), float(idf) * impact
        if not terms:
            return []
        if self._champions is not None:
            return self._keyword_search_champions(tokens, n, terms, allowed)
        repeats = Counter(t for t in tokens if t in terms)  # a repeated query word counts again, as in bm25s
        generators = sorted(terms, key=lambda t: -bound[t] * repeats[t])
        tails = np.cumsum([bound[t] * repeats[t] for t in reversed(generators)])[::-1].tolist() + [0.0]

        def enough(theta: float) -> int:
            """The fewest generators whose left-out terms cannot reach ``theta``."""
            return next(j for j in range(1, len(generators) + 1) if tails[j] < theta * (1 - 1e-6))

        # First as many generators as hold n chunks, for a first n-th best score; then as many
        # as that score requires (more generators only raise the n-th best score).
        taken = next((j for j in range(1, len(generators) + 1)
                      if sum(terms[t][1][s][1] - terms[t][1][s][0] for t in generators[:j] for s in terms[t][1]) >= n),
                     len(generators))
        while True:
            positions, scores = self._bm25_candidates(tokens, terms, generators[:taken], allowed)
            if taken == len(generators):
                break
            if len(scores) < n:
                taken += 1
                continue
            theta = float(np.partition(scores, len(scores) - n)[len(scores) - n])
            needed = enough(theta)
            if needed <= taken:
                break
            taken = needed
        return self._bm25_top(positions, scores, n)

    def _keyword_search_champions(self, tokens, n, terms, allowed) -> list[tuple[int, float]]:
        """Approximate BM25 (above BM25_EXACT_MAX_CHUNKS): candidates from champion lists,
        the best of them by champion-list score rescored exactly over all terms."""
        keep_per_segment = self.CHAMPION_CANDIDATES * n
        all_positions, all_scores = [], []
        for s, segment in enumerate(self.segments):
            rows_of, counts_of = self._postings[s]
            offset, champions = self._offsets[s], self._champions[s]
            rough = np.zeros(segment.size, dtype=np.float64)
            for token in tokens:
                if token not in terms or s not in terms[token][1]:
                    continue
                idf, (lo, hi) = terms[token][0], terms[token][1][s]
                t = segment.term_index[token]
                r, tf = champions[t] if t in champions else (rows_of[lo:hi], counts_of[lo:hi])
                tf = tf.astype(np.float64)
                rough[r] += idf * tf / (tf + self._norm[offset + r])
            searchable = self._live if allowed is None else allowed
            if allowed is not None or self._live_rows[s] is not None:
                rough[~searchable[offset:offset + segment.size]] = 0
            rows = np.flatnonzero(rough > 0)
            if len(rows) > keep_per_segment:
                rows = np.sort(rows[np.argpartition(-rough[rows], keep_per_segment)[:keep_per_segment]])
            if len(rows):
                rows = rows.astype(rows_of.dtype)
                all_positions.append(offset + rows.astype(np.int64))
                all_scores.append(self._score_rows(s, rows, tokens, terms))
        if not all_positions:
            return []
        return self._bm25_top(np.concatenate(all_positions), np.concatenate(all_scores), n)

    def _bm25_top(self, positions: np.ndarray, scores: np.ndarray, n: int) -> list[tuple[int, float]]:
        """The n best (position, score): float32 scores, ties by document, then position."""
        scores = scores.astype(np.float32)
        keep = scores > 0
        positions, scores = positions[keep], scores[keep]
        if len(scores) > n:  # only ties at the n-th score need the full ordering
            keep = scores >= np.partition(scores, len(scores) - n)[len(scores) - n]
            positions, scores = positions[keep], scores[keep]
        top = np.lexsort((positions, self._doc_order[positions], -scores))[:n]
        return [(int(positions[i]), float(scores[i])) for i in top]

    def _bm25_candidates(self, tokens, terms, generators, allowed) -> tuple[np.ndarray, np.ndarray]:
        """(positions, float64 BM25 scores) of every searchable chunk holding a generator
        term, each scored over all the query's terms."""
        all_positions, all_scores = [], []
        for s, segment in enumerate(self.segments):
            offset = self._offsets[s]
            rows_of, counts_of = self._postings[s]
            spans = [terms[t][1][s] for t in generators if s in terms[t][1]]
            if not spans:
                continue
            if len(spans) == 1:
                rows = rows_of[spans[0][0]:spans[0][1]]  # ascending, unique
            else:
                mark = np.zeros(segment.size, dtype=bool)
                for lo, hi in spans:
                    mark[rows_of[lo:hi]] = True
                rows = np.flatnonzero(mark).astype(rows_of.dtype)
            searchable = self._live if allowed is None else allowed
            if allowed is not None or self._live_rows[s] is not None:
                rows = rows[searchable[offset + rows]]
            if not len(rows):
                continue
            if len(rows) > segment.size * self.SCORE_WHOLE_SEGMENT_ABOVE:
                # Most of the segment: its chunks scored at once, postings walked in full.
                full = np.zeros(segment.size, dtype=np.float64)
                for token in tokens:
                    if token not in terms or s not in terms[token][1]:
                        continue
                    idf, (lo, hi) = terms[token][0], terms[token][1][s]
                    r = rows_of[lo:hi].astype(np.int64)
                    tf = counts_of[lo:hi].astype(np.float64)
                    if self._live_rows[s] is not None:
                        live = self._live[offset + r]
                        r, tf = r[live], tf[live]
                    full[r] += idf * tf / (tf + self._norm[offset + r])
                scores = full[rows]
            else:
                scores = self._score_rows(s, rows, tokens, terms)
            all_positions.append(offset + rows.astype(np.int64))
            all_scores.append(scores)
        if not all_positions:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        return np.concatenate(all_positions), np.concatenate(all_scores)

    def _score_rows(self, s: int, rows: np.ndarray, tokens, terms) -> np.ndarray:
        """The float64 BM25 scores of the given rows (ascending) of segment ``s``: each
        term's postings looked up for them, added in the query's order."""
        rows_of, counts_of = self._postings[s]
        scores = np.zeros(len(rows), dtype=np.float64)
        norm = self._norm[self._offsets[s] + rows]
        for token in tokens:
            if token not in terms or s not in terms[token][1]:
                continue
            idf, (lo, hi) = terms[token][0], terms[token][1][s]
            term_rows = rows_of[lo:hi]  # ascending
            at = np.minimum(np.searchsorted(term_rows, rows), hi - lo - 1)
            hit = term_rows[at] == rows
            if not hit.any():
                continue
            tf = counts_of[lo:hi][at[hit]].astype(np.float64)
            scores[hit] += idf * tf / (tf + norm[hit])
        return scores


# -- the index folder ----------------------------------------------------------------------
class FileStore(Store):
    """An index folder of generations and segments (layout in the module docstring)."""

    def __init__(self, root: str | os.PathLike, max_segments: int = DEFAULT_MAX_SEGMENTS):
        self.root = Path(root)
        self.max_segments = max_segments
        self._view: FileView | None = None
        self._load_lock = threading.Lock()
        self._writer = threading.RLock()  # threads of this process, one at a time
        self._writer_depth = 0
        self._lock_fd: int | None = None
        self._warned: set[str] = set()

    def configure(self, config) -> None:
        self.max_segments = max(1, int(getattr(config, "max_segments", self.max_segments)))
        self.dense = {key: int(getattr(config, name, DENSE[key])) for key, name in (
            ("hnsw_above", "faiss_hnsw_above"), ("m", "hnsw_m"), ("ef_search", "hnsw_ef_search"),
            ("ef_construction", "hnsw_ef_construction"))}

    # -- where things are
    def _generations(self) -> list[tuple[int, str]]:
        """(number, name) of the generation folders, newest first."""
        try:
            children = list(self.root.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise IndexStateError(f"cannot read the index folder {self.root} ({exc.strerror or exc})") from None
        found = [(int(m.group(1)), c.name) for c in children
                 if c.is_dir() and (m := _GEN.fullmatch(c.name))]
        return sorted(found, reverse=True)

    def _current_pointer(self) -> tuple[str | None, str]:
        """The generation CURRENT names, or None and why not."""
        path = self.root / "CURRENT"
        try:
            text = path.read_bytes().decode("ascii").strip()
        except FileNotFoundError:
            return None, f"{path} is missing"
        except (OSError, UnicodeDecodeError):
            return None, f"{path} is unreadable"
        if not text:
            return None, f"{path} is empty"
        if not _GEN.fullmatch(text):
            return None, f"{path} does not name a generation ({text[:40]!r})"
        if not (self.root / text).is_dir():
            return None, f"{path} names {text}, which is missing"
        return text, ""

    def exists(self) -> bool:
        return (self.root / "CURRENT").exists() or bool(self._generations())

    def _read_record(self, gen: str) -> dict:
        """A generation's manifest, checksum verified; its copy if the first is damaged."""
        problems = []
        for name in MANIFEST_FILES:
            path = self.root / gen / name
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
                version = record.get("format_version")
                if "checksum" not in record and isinstance(version, int) and version != FORMAT_VERSION:
                    raise IndexStateError(f"the index at {self.root} was written in format {version}, this "
                                          f"version reads format {FORMAT_VERSION}; {REPAIR}")
                body = {k: v for k, v in record.items() if k != "checksum"}
                if record.get("checksum") != _checksum(body):
                    raise ValueError("its checksum does not match its content")
                if version != FORMAT_VERSION:
                    raise IndexStateError(f"the index at {self.root} was written in format {version}, this "
                                          f"version reads format {FORMAT_VERSION}; {REPAIR}")
                for key in ("embedding", "chunking", "documents", "placement", "segments"):
                    if key not in record:
                        raise ValueError(f"it lacks {key!r}")
            except IndexStateError:
                raise
            except FileNotFoundError:
                problems.append(f"{path} is missing")
                continue
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                problems.append(f"{path} is unreadable ({exc})")
                continue
            if problems:
                self._warn(f"rag: {problems[0]}; reading its copy {path.name} "
                           "(`rag index --repair` rewrites it)")
            return record
        raise IndexStateError(f"the index is damaged: {'; '.join(problems)}; {REPAIR}")

    def _resolve(self) -> tuple[str, dict]:
        """The live generation and its manifest. A missing or unusable CURRENT falls back to
        the newest generation whose manifest and file sizes verify, with a warning."""
        gen, why = self._current_pointer()
        if gen is not None:
            return gen, self._read_record(gen)
        generations = self._generations()
        if not generations:
            if (self.root / "CURRENT").exists():
                raise IndexStateError(f"the index at {self.root} holds no generation ({why}); rebuild it from "
                                      "your documents with `rag index --rebuild PATH…`")
            raise IndexStateError(f"no index at {self.root}; run `rag index` to build it")
        newest = generations[0][1]  # always complete: generations appear by an atomic rename
        try:
            record = self._read_record(newest)
            for seg, info in record["segments"].items():
                for file, expected in info["files"].items():
                    if (self.root / "segments" / seg / file).stat().st_size != expected["bytes"]:
                        raise OSError(f"{self.root / 'segments' / seg / file} has the wrong size")
        except (IndexStateError, OSError, KeyError, TypeError, AttributeError) as exc:
            raise IndexStateError(f"the index is damaged: {why}, and the newest generation {newest} does not "
                                  f"verify ({exc}); {REPAIR}") from None
        self._warn(f"rag: {why}; reading {newest}, the newest generation, which verifies "
                   "(the next `rag index` rewrites CURRENT)")
        return newest, record

    def _warn(self, message: str) -> None:
        """A warning on stderr, once per store (a UI search must not repeat it each time)."""
        if message not in self._warned:
            self._warned.add(message)
            log.warning("%s", message)

    def view(self) -> FileView:
        """The live generation; reloaded when any process has written a new one."""
        if not self.exists():
            raise IndexStateError(f"no index at {self.root}; run `rag index` to build it")
        for attempt in range(3):
            pointer, _ = self._current_pointer()
            loaded = self._view
            if loaded is not None and pointer == loaded.gen and self._stamp(pointer) == loaded.stamp:
                return loaded  # generations are immutable: the same folder, the same view
            try:
                return self._load_view()
            except IndexStateError:
                # Two writes in quick succession retire the generation this read began
                # with; that is not damage. Damage stays put while CURRENT does.
                if attempt == 2 or self._current_pointer()[0] == pointer:
                    raise
        raise AssertionError("unreachable")

    def _load_view(self) -> FileView:
        gen, record = self._resolve()
        with self._load_lock:  # concurrent searches load a new generation once
            current = self._view
            if current is None or current.gen != gen or current.record.get("checksum") != record.get("checksum"):
                try:
                    stamp = self._stamp(gen)
                    settings = _dense_settings.set(getattr(self, "dense", DENSE))
                    try:
                        current = FileView(self.root, gen, record)
                    finally:
                        _dense_settings.reset(settings)
                    current.stamp = stamp
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    raise _damaged(self.root / gen / "manifest.json",
                                   f"does not describe its segments ({type(exc).__name__}: {exc})") from None
                self._view = current
        return current

    def _stamp(self, gen: str | None) -> tuple | None:
        try:
            st = (self.root / gen / MANIFEST_FILES[0]).stat()
            return st.st_ino, st.st_size, st.st_mtime_ns
        except (OSError, TypeError):
            return None

    def manifest(self) -> Manifest:
        """The live manifest, without loading the segments (cheap)."""
        if not self.exists():
            raise IndexStateError(f"no index at {self.root}; run `rag index` to build it")
        return Manifest.from_dict(self._resolve()[1])

    def documents(self, doc_ids: set[str]) -> dict[str, DocumentEntry]:
        """Only the given documents' rows are parsed; their segments' files are checked
        (size and checksum, streamed) but not loaded, so updating one document of a large
        index does not load the index."""
        if not self.exists():
            return {}
        _, record = self._resolve()
        manifest = Manifest.from_dict(record)
        by_segment: dict[str, list[str]] = {}
        for d in sorted(doc_ids):
            if d in record["placement"] and d in manifest.documents:
                by_segment.setdefault(record["placement"][d], []).append(d)
        found: dict[str, DocumentEntry] = {}
        for name, docs in by_segment.items():
            info = record["segments"][name]
            folder = self.root / "segments" / name
            if "rows" not in info:
                return super().documents(doc_ids)
            # Hashed in full: these vectors are copied into a new segment under a new checksum.
            Segment.verify(folder, info, hash_all=True)
            try:
                chunk_lines = (folder / "chunks.jsonl").read_bytes().split(b"\n")
                para_lines = (folder / "paragraphs.jsonl").read_bytes().split(b"\n")
                vectors = np.load(folder / "vectors.npy", mmap_mode="r", allow_pickle=False)
                for d in docs:
                    c0, nc, p0, np_ = info["rows"][d]
                    chunks = [Chunk(**row) for row in _parse_jsonl(b"\n".join(chunk_lines[c0:c0 + nc]))]
                    paragraphs = [Paragraph.from_dict(row) for row in _parse_jsonl(b"\n".join(para_lines[p0:p0 + np_]))]
                    if any(c.doc_id != d for c in chunks) or any(p.doc_id != d for p in paragraphs):
                        raise ValueError("rows of another document")
                    found[d] = DocumentEntry(manifest.documents[d], paragraphs, chunks,
                                             np.array(vectors[c0:c0 + nc], dtype=np.float32))
            except (OSError, ValueError, TypeError, KeyError) as exc:
                raise _damaged(folder, f"cannot be read ({exc})") from None
        return found

    # -- the writers' lock
    @contextlib.contextmanager
    def writing(self, timeout: float = 120.0):
        if not self._writer.acquire(timeout=max(timeout, 0)):
            raise IndexBusy(f"another thread of this process is writing the index at {self.root}; "
                            f"waited {timeout:.0f} s")
        try:
            if self._writer_depth == 0:
                self._lock_fd = self._acquire_file_lock(timeout)
            self._writer_depth += 1
            try:
                yield
            finally:
                self._writer_depth -= 1
                if self._writer_depth == 0:
                    os.close(self._lock_fd)  # releases the flock
                    self._lock_fd = None
        finally:
            self._writer.release()

    def _acquire_file_lock(self, timeout: float) -> int:
        path = self.root / ".lock"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise IndexStateError(f"cannot open the index's lock file {path} ({exc.strerror or exc}); "
                                  "check that the index folder is writable") from None
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    try:
                        holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
                    finally:
                        os.close(fd)
                    raise IndexBusy(f"another writer (pid {holder}) is updating the index at {self.root}; "
                                    f"waited {timeout:.0f} s. Try again when it has finished "
                                    f"(lock file: {path})") from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _fault_point("lock-acquired")
        return fd

    # -- writing
    def apply(self, manifest, upserts, deletions, replace_all=False):
        with self.writing():
            try:
                self._apply_locked(manifest, upserts, deletions, replace_all)
            except OSError as exc:  # disk full, read-only folder…: the commit did not happen
                raise IndexStateError(f"could not write the index at {self.root} ({exc.strerror or exc}); "
                                      "the index is unchanged, the previous version stays in use") from None

    def _apply_locked(self, manifest, upserts, deletions, replace_all):
        base_gen, base = None, None
        if self.exists() and not replace_all:
            base_gen, base = self._resolve()  # raises on damage: never build on a damaged base
        elif self.exists():
            with contextlib.suppress(IndexStateError):
                base_gen, _ = self._resolve()
        self._clean_leftovers(base_gen)
        segments_dir = self.root / "segments"
        replaced = {e.meta["doc_id"] for e in upserts} | set(deletions)
        documents: dict[str, dict] = {}
        placement: dict[str, str] = {}
        segments: dict[str, dict] = {}
        if base is not None:
            for doc_id, meta in base["documents"].items():
                if doc_id not in replaced:
                    documents[doc_id], placement[doc_id] = meta, base["placement"][doc_id]
            live_segments = set(placement.values())
            for name, info in base["segments"].items():
                if name in live_segments:  # a segment left with no live document is dropped
                    Segment.verify(segments_dir / name, info)  # never carry damage forward
                    segments[name] = info
        if upserts:
            name, info = self._write_new_segment(upserts)
            segments[name] = info
            for e in upserts:
                meta = dict(e.meta, chunks=len(e.chunks))
                documents[e.meta["doc_id"]], placement[e.meta["doc_id"]] = meta, name
        self._compact(segments, placement, documents, manifest.dim)
        documents = dict(sorted(documents.items()))
        manifest.documents = documents
        body = dict(manifest.to_dict(), placement=dict(sorted(placement.items())), segments=segments)
        self._commit(body, base_gen)

    def _write_new_segment(self, upserts: list[DocumentEntry]) -> tuple[str, dict]:
        upserts = sorted(upserts, key=lambda e: e.meta["doc_id"])
        chunks = [c for e in upserts for c in e.chunks]
        paragraphs = [p for e in upserts for p in e.paragraphs]
        vectors = (np.concatenate([e.vectors for e in upserts]).astype(np.float32) if chunks
                   else np.zeros((0, upserts[0].vectors.shape[1] if upserts else 0), dtype=np.float32))
        postings = Postings.from_tokens([tokenize(c.indexed_text) for c in chunks])
        return _write_segment(self.root / "segments", chunks, paragraphs, vectors, postings)

    def _compact(self, segments: dict[str, dict], placement: dict[str, str], documents: dict, dim: int) -> None:
        """Beyond ``max_segments``, the smallest segments (and any mostly made of
        tombstones) are merged into one, so searches stay fast and dead chunks are freed,
        while a large segment is not rewritten for a small change."""
        live = Counter(placement.values())
        if len(segments) <= self.max_segments:
            return
        by_size = sorted(segments, key=lambda s: (live[s], s))
        chosen = set(by_size[:len(segments) - self.max_segments + 1])
        chosen |= {s for s in segments if live[s] < segments[s]["chunks"] / 2}
        if len(chosen) < 2:
            return
        loaded = [Segment.load(self.root / "segments" / s, segments[s], dim, dense=False) for s in sorted(chosen)]
        chunks, paragraphs, vectors, parts = [], [], [], []
        for seg in loaded:
            keep = np.array([i for i, c in enumerate(seg.chunks) if placement.get(c.doc_id) == seg.name],
                            dtype=np.int64)
            chunks.extend(seg.chunks[i] for i in keep)
            paragraphs.extend(p for p in seg.paragraphs if placement.get(p.doc_id) == seg.name)
            vectors.append(seg.vectors[keep])
            parts.append((seg.postings, keep))
        name, info = _write_segment(self.root / "segments", chunks, paragraphs,
                                    np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32),
                                    Postings.merge(parts))
        for s in chosen:
            del segments[s]
        segments[name] = info
        for doc_id, seg in placement.items():
            if seg in chosen:
                placement[doc_id] = name
        log.info("rag: compacted %d segments into %s", len(chosen), name)

    def _commit(self, body: dict, base_gen: str | None) -> None:
        """Write the generation and make it current (the commit point), then retire."""
        numbers = [n for n, _ in self._generations()]
        gen = f"gen-{(max(numbers) + 1 if numbers else 1):06d}"
        body = dict(body, generation=int(gen[4:]))
        record = dict(body, checksum=_checksum(body))
        text = json.dumps(record, ensure_ascii=False, indent=1)
        tmp = self.root / f"tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            for name in MANIFEST_FILES:
                (tmp / name).write_text(text, encoding="utf-8")
            _fsync_tree(tmp)
            os.rename(tmp, self.root / gen)  # a fresh name: never an existing folder
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_dir(self.root)
        _fault_point("generation-written")
        pointer = self.root / f"CURRENT.tmp-{uuid.uuid4().hex[:8]}"
        pointer.write_text(gen + "\n")
        _fsync_file(pointer)
        _fault_point("current-written")
        os.replace(pointer, self.root / "CURRENT")  # the commit point
        try:  # committed: what follows is tidying, and must not report the write as failed
            _fsync_dir(self.root)
            _fault_point("current-swapped")
            self._retire(keep=[gen] + ([base_gen] if base_gen else []))
        except OSError as exc:
            log.warning("rag: %s committed; retiring older generations failed (%s), the next write retries",
                        gen, exc.strerror or exc)

    def _retire(self, keep: list[str]) -> None:
        """Delete generations other than the new and the previous one (kept for readers
        still loading it), and segments neither references. A segment no generation
        references was left by an interrupted write, and says so."""
        referenced: set[str] = set()
        recorded: set[str] = set()
        for _, gen in self._generations():
            with contextlib.suppress(IndexStateError, OSError, KeyError, TypeError, AttributeError):
                names = set(self._read_record(gen)["segments"])
                recorded |= names
                if gen in keep:
                    referenced |= names
        first = True
        for _, name in self._generations():
            if name not in keep:
                shutil.rmtree(self.root / name, ignore_errors=True)
                if first:
                    _fault_point("retire-partial")
                    first = False
        segments_dir = self.root / "segments"
        if segments_dir.is_dir():
            for child in segments_dir.iterdir():
                if child.is_dir() and _SEG.fullmatch(child.name) and child.name not in referenced:
                    if child.name not in recorded:
                        log.warning("rag: removed %s, a segment left by an interrupted index write", child)
                    shutil.rmtree(child, ignore_errors=True)

    def _clean_leftovers(self, current: str | None) -> None:
        """Remove what an interrupted write left behind: temporary folders, and generations
        newer than the current one that never became current. Each gets a log line."""
        if not self.root.is_dir():
            return
        for folder in (self.root, self.root / "segments"):
            if not folder.is_dir():
                continue
            for child in folder.iterdir():
                if child.name.startswith(("tmp-", "CURRENT.tmp-")):
                    log.warning("rag: removed %s, left by an interrupted index write", child)
                    if child.is_dir():
                        shutil.rmtree(child, ignore_errors=True)
                    else:
                        child.unlink(missing_ok=True)
        if current is None:
            return  # without a usable current generation nothing else may be deleted
        current_number = int(current[4:])
        for number, name in self._generations():
            if number > current_number:
                log.warning("rag: removed %s, a generation written by an interrupted index write "
                            "that never became current", self.root / name)
                shutil.rmtree(self.root / name, ignore_errors=True)

    # -- repair
    def salvage(self) -> Salvage:
        problems: list[str] = []
        record = None
        if self.exists():
            try:
                _, record = self._resolve()
            except IndexStateError as exc:
                problems.append(str(exc))
                for _, name in self._generations():  # the newest manifest that still reads
                    try:
                        record = self._read_record(name)
                        break
                    except IndexStateError:
                        continue
        if record is None:
            legacy = self._legacy_manifest()
            return Salvage(legacy, {}, problems)
        manifest = Manifest.from_dict(record)
        entries: dict[str, DocumentEntry] = {}
        for name, info in record["segments"].items():
            try:
                segment = Segment.load(self.root / "segments" / name, info, manifest.dim, dense=False)
            except IndexStateError as exc:
                problems.append(str(exc))
                continue
            except (KeyError, TypeError, ValueError) as exc:
                problems.append(f"segment {name} cannot be read ({exc})")
                continue
            for doc_id, seg in record["placement"].items():
                if seg != name or doc_id not in manifest.documents:
                    continue
                rows = [i for i, c in enumerate(segment.chunks) if c.doc_id == doc_id]
                entries[doc_id] = DocumentEntry(
                    meta=manifest.documents[doc_id],
                    paragraphs=sorted((p for p in segment.paragraphs if p.doc_id == doc_id), key=lambda p: p.number),
                    chunks=[segment.chunks[i] for i in rows], vectors=segment.vectors[rows])
        return Salvage(manifest, entries, problems)

    def _legacy_manifest(self) -> Manifest | None:
        """The document list of an index written in format 1 (one folder per generation,
        no checksums), so a repair can re-read its documents."""
        for _, name in self._generations():
            try:
                raw = json.loads((self.root / name / "manifest.json").read_text(encoding="utf-8"))
                manifest = Manifest.from_dict(raw)
                if isinstance(manifest.documents, dict):
                    return manifest
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return None
