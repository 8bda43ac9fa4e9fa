"""Incremental indexing: apply added, changed and removed files; embed only new text."""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from embeddings import Embedder

from .chunking import chunk_document
from .config import Config
from .documents import DocumentError, file_hash, find_files, load_document
from .store import DocumentEntry, IndexStateError, Manifest, Store

EMBED_BATCH = 16


class NoDocuments(ValueError):
    """Nothing to index at the given paths."""


@dataclass
class IndexReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    embedded_chunks: int = 0
    reused_chunks: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def summary(self) -> str:
        return (f"{len(self.added)} added, {len(self.updated)} updated, {len(self.removed)} removed, "
                f"{len(self.unchanged)} unchanged, {len(self.skipped)} skipped; "
                f"{self.embedded_chunks} chunks embedded, {self.reused_chunks} reused from cache")


def chunking_settings(config: Config) -> dict:
    return {"size": config.chunk_size, "overlap": config.chunk_overlap, "header": config.context_header}


def check_compatible(manifest: Manifest, embedder: Embedder) -> None:
    if manifest.embedding != embedder.spec:
        raise IndexStateError(
            f"the index was built with embedding backend {manifest.embedding!r} but "
            f"{embedder.spec!r} is configured; rebuild with `rag index --rebuild`, or set "
            f"--embedding {manifest.embedding}")


def _doc_id(path: Path, taken: dict[str, str]) -> str:
    """The file name, unless another file of that name is indexed from elsewhere."""
    resolved = str(path.resolve())
    doc_id = path.name
    if taken.get(doc_id, resolved) != resolved:
        doc_id = f"{path.stem}-{hashlib.sha1(resolved.encode()).hexdigest()[:6]}{path.suffix}"
    taken[doc_id] = resolved
    return doc_id


def index_paths(paths: list[Path], store: Store, embedder: Embedder, config: Config,
                rebuild: bool = False, progress: bool = True) -> IndexReport:
    paths = [Path(p) for p in paths]
    try:
        files = find_files(paths)
    except DocumentError as exc:
        raise NoDocuments(str(exc)) from None
    if not files:
        raise NoDocuments(f"no documents ({', '.join(('.txt', '.md', '.docx', '.html', '.pdf'))}) "
                          f"found in {', '.join(map(str, paths))}")

    old = None
    settings = chunking_settings(config)
    if store.exists() and not rebuild:
        old = store.manifest()
        check_compatible(old, embedder)
        if old.chunking != settings:
            raise IndexStateError(f"the index was chunked with {old.chunking} but {settings} is configured; "
                                  "rebuild with `rag index --rebuild`")
    old_docs = dict(old.documents) if old else {}
    manifest = Manifest(embedding=embedder.spec, dim=embedder.dim, chunking=settings)

    report = IndexReport()
    taken = {d: str(Path(m["path"]).resolve()) for d, m in old_docs.items()}
    seen: set[str] = set()
    parsed = []
    for path in files:
        doc_id = _doc_id(path, taken)
        seen.add(doc_id)
        previous = old_docs.get(doc_id)
        try:
            digest = file_hash(path)
        except OSError as exc:
            report.skipped.append((str(path), f"cannot read ({exc.strerror or exc})"))
            continue
        if previous and previous["content_hash"] == digest:
            report.unchanged.append(doc_id)
            continue
        try:
            doc = load_document(path, doc_id)
        except DocumentError as exc:
            report.skipped.append((str(path), str(exc)))
            continue  # an indexed older version, if any, stays in the index
        parsed.append(doc)
        (report.updated if previous else report.added).append(doc_id)

    roots = [p.resolve() for p in paths]
    for doc_id, meta in old_docs.items():
        source = Path(meta["path"]).resolve()
        under_roots = any(source == r or r in source.parents for r in roots)
        if doc_id not in seen and under_roots and not source.exists():
            report.removed.append(doc_id)

    if not old_docs and not parsed:
        raise NoDocuments("no readable documents: " + "; ".join(reason for _, reason in report.skipped))

    cache = _vector_cache(store, embedder)
    upserts = _embed(parsed, config, embedder, cache, report, progress)
    if rebuild or report.changed or old is None:
        store.apply(manifest, upserts, report.removed, replace_all=rebuild)
    return report


def _vector_cache(store: Store, embedder: Embedder) -> dict[str, np.ndarray]:
    """Vectors of the current index by chunk content hash (empty if it is unusable)."""
    cache: dict[str, np.ndarray] = {}
    try:
        if not store.exists():
            return cache
        view = store.view()
        if view.manifest.embedding != embedder.spec:
            return cache
        for doc_id in view.manifest.documents:
            entry = view.document(doc_id)
            for chunk, vector in zip(entry.chunks, entry.vectors):
                cache[chunk.content_hash(embedder.spec)] = vector
    except IndexStateError:
        pass  # a damaged index being rebuilt: nothing to reuse
    return cache


def _embed(docs, config: Config, embedder: Embedder, cache: dict[str, np.ndarray],
           report: IndexReport, progress: bool) -> list[DocumentEntry]:
    chunk_lists = [chunk_document(d, config.chunk_size, config.chunk_overlap, config.context_header)
                   for d in docs]
    missing = {}
    for chunks in chunk_lists:
        for chunk in chunks:
            key = chunk.content_hash(embedder.spec)
            if key not in cache:
                missing[key] = chunk.indexed_text
    report.embedded_chunks = len(missing)
    report.reused_chunks = sum(map(len, chunk_lists)) - len(missing)
    keys = list(missing)
    with tqdm(total=len(keys), desc="embedding", unit="chunk", file=sys.stderr,
              disable=not progress or not keys) as bar:
        for start in range(0, len(keys), EMBED_BATCH):
            batch = keys[start:start + EMBED_BATCH]
            for key, vector in zip(batch, embedder.encode([missing[k] for k in batch])):
                cache[key] = vector
            bar.update(len(batch))
    return [DocumentEntry(doc.meta_dict(), doc.paragraphs, chunks,
                          np.array([cache[c.content_hash(embedder.spec)] for c in chunks],
                                   dtype=np.float32).reshape(-1, embedder.dim))
            for doc, chunks in zip(docs, chunk_lists)]
