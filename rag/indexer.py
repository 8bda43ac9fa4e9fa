"""Incremental indexing: apply added, changed and removed files; embed only new text."""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embeddings import Embedder

from .chunking import chunk_document
from .config import Config
from .documents import DocumentError, file_hash, find_files, load_document
from .embed_workers import embed_missing
from .profile import get_profile
from .store import DocumentEntry, IndexStateError, Manifest, Store

log = logging.getLogger("rag.index")


class NoDocuments(ValueError):
    """Nothing to index at the given paths."""


@dataclass
class IndexReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # indexed, but not everything was read as laid out
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    lost: list[str] = field(default_factory=list)  # by a repair: damaged and no readable file
    embedded_chunks: int = 0
    reused_chunks: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def summary(self) -> str:
        return (f"{len(self.added)} added, {len(self.updated)} updated, {len(self.removed)} removed, "
                f"{len(self.unchanged)} unchanged, {len(self.skipped)} skipped"
                + (f", {len(self.lost)} lost" if self.lost else "") + "; "
                f"{self.embedded_chunks} chunks embedded, {self.reused_chunks} reused from cache")


def chunking_settings(config: Config) -> dict:
    return {"size": config.chunk_size, "overlap": config.chunk_overlap, "header": config.context_header}


def check_compatible(manifest: Manifest, embedder: Embedder) -> None:
    if manifest.embedding != embedder.spec:
        raise IndexStateError(
            f"the index was built with embedding backend {manifest.embedding!r} but "
            f"{embedder.spec!r} is configured; re-embed its documents with `rag index --repair`, "
            f"or set --embedding {manifest.embedding}")


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
    # Recorded absolute, so that `rag index --repair` finds them from any folder.
    files = [Path(os.path.abspath(f)) for f in files]
    store.configure(config)
    # The whole read-plan-write cycle holds the writers' lock: another writer's documents
    # (and the names they took) are in the manifest read here, and none can land between
    # this read and the write.
    with store.writing(config.lock_timeout):
        return _index_locked(paths, files, store, embedder, config, rebuild, progress)


def _index_locked(paths, files, store, embedder, config, rebuild, progress) -> IndexReport:
    old = None
    settings = chunking_settings(config)
    if store.exists() and not rebuild:
        old = store.manifest()
        check_compatible(old, embedder)
        if old.chunking != settings:
            raise IndexStateError(f"the index was chunked with {old.chunking} but {settings} is configured; "
                                  "re-chunk its documents with `rag index --repair`")
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
            size = path.stat().st_size
            if size > config.max_file_bytes:
                report.skipped.append((str(path), f"{path.name}: {size} bytes, more than the limit of "
                                                  f"{config.max_file_bytes} (config max_file_bytes)"))
                continue
            digest = file_hash(path)
        except OSError as exc:
            report.skipped.append((str(path), f"cannot read ({exc.strerror or exc})"))
            continue
        if previous and previous["content_hash"] == digest:
            report.unchanged.append(doc_id)
            continue
        try:
            doc = load_document(path, doc_id, get_profile(config.profile))
        except DocumentError as exc:
            report.skipped.append((str(path), str(exc)))
            continue  # an indexed older version, if any, stays in the index
        report.warnings.extend(f"{path.name}: {warning}" for warning in doc.warnings)
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

    # Vectors are reused from the documents being replaced (or, for a rebuild, from the
    # whole index); adding new documents reads nothing of the index but its manifest.
    cache = _vector_cache(store, embedder, None if rebuild else set(report.updated))
    upserts = _embed(parsed, config, embedder, cache, report, progress)
    if rebuild or report.changed or old is None:
        store.apply(manifest, upserts, report.removed, replace_all=rebuild)
    return report


def _vector_cache(store: Store, embedder: Embedder, doc_ids: set[str] | None) -> dict[str, np.ndarray]:
    """Vectors of the current index by chunk content hash, of the given documents (all
    when None); empty if the index is unusable."""
    cache: dict[str, np.ndarray] = {}
    if doc_ids is not None and not doc_ids:
        return cache
    try:
        if not store.exists() or store.manifest().embedding != embedder.spec:
            return cache
        if doc_ids is None:
            view = store.view()
            entries = (view.document(d) for d in view.manifest.documents)
        else:  # only the documents being replaced: a store need not load the whole index
            entries = store.documents(doc_ids).values()
        for entry in entries:
            _cache_entry(cache, entry, embedder)
    except IndexStateError:
        pass  # a damaged index being rebuilt: nothing to reuse
    return cache


def _cache_entry(cache: dict[str, np.ndarray], entry: DocumentEntry, embedder: Embedder) -> None:
    for chunk, vector in zip(entry.chunks, entry.vectors):
        cache[chunk.content_hash(embedder.spec)] = vector


def repair_index(store: Store, embedder: Embedder, config: Config, progress: bool = True) -> IndexReport:
    """Rebuild the index from the documents its manifest records: those whose stored data
    is intact are kept as they are, the others are read again from their recorded paths.
    Never reads the default corpus. A document is lost only when both its stored data is
    damaged and its file is gone or unreadable; the report lists it."""
    store.configure(config)
    with store.writing(config.lock_timeout):
        salvage = store.salvage()
        for problem in salvage.problems:
            log.warning("rag: %s", problem)
        if salvage.manifest is None:
            raise IndexStateError(f"no readable record of the indexed documents in {config.index}; "
                                  "rebuild it from your documents with `rag index --rebuild PATH…`")
        settings = chunking_settings(config)
        reusable = salvage.manifest.embedding == embedder.spec and salvage.manifest.chunking == settings
        report = IndexReport()
        kept: list[DocumentEntry] = []
        parsed = []
        unreadable: list[str] = []
        cache: dict[str, np.ndarray] = {}
        if salvage.manifest.embedding == embedder.spec:
            for entry in salvage.entries.values():
                _cache_entry(cache, entry, embedder)
        for doc_id, meta in salvage.manifest.documents.items():
            entry = salvage.entries.get(doc_id)
            if reusable and entry is not None:
                kept.append(entry)
                report.unchanged.append(doc_id)
                continue
            path = Path(meta.get("path", ""))
            try:
                parsed.append(load_document(path, doc_id, get_profile(config.profile)))
                report.updated.append(doc_id)
            except DocumentError as exc:
                if entry is not None:  # re-embedding for new settings, and the file is gone
                    unreadable.append(f"{doc_id} ({exc})")
                else:
                    report.lost.append(doc_id)
                    report.skipped.append((str(path), f"{doc_id} lost: its index data is damaged and its "
                                                      f"file cannot be read ({exc})"))
        if unreadable:  # vectors of two embedders cannot share an index; keep the old one whole
            raise IndexStateError(
                f"cannot re-embed {len(unreadable)} document(s) with the configured settings, their files "
                f"cannot be read: {'; '.join(unreadable[:5])}. Restore them, or repair with the settings "
                f"the index was built with (--embedding {salvage.manifest.embedding}). Nothing was changed.")
        upserts = kept + _embed(parsed, config, embedder, cache, report, progress)
        manifest = Manifest(embedding=embedder.spec, dim=embedder.dim, chunking=settings)
        store.apply(manifest, upserts, [], replace_all=True)
        return report


class NotIndexed(KeyError):
    """A document to remove that the index does not hold."""

    def __str__(self) -> str:
        return str(self.args[0])


def resolve_documents(manifest: Manifest, targets: list[str]) -> list[str]:
    """Document ids for ``targets``, each a document id or the path of an indexed file."""
    by_path = {str(Path(m["path"]).resolve()): d for d, m in manifest.documents.items()}
    found, unknown = [], []
    for target in targets:
        if target in manifest.documents:
            doc_id = target
        else:
            doc_id = by_path.get(str(Path(target).resolve()))
        if doc_id is None:
            unknown.append(target)
        elif doc_id not in found:
            found.append(doc_id)
    if unknown:
        raise NotIndexed(f"not in the index: {', '.join(unknown)} (`rag documents` lists what is)")
    return found


def remove_documents(store: Store, targets: list[str], config: Config) -> list[str]:
    """Remove documents (ids or paths) from the index, all or none; their ids."""
    store.configure(config)
    with store.writing(config.lock_timeout):
        manifest = store.manifest()
        doc_ids = resolve_documents(manifest, targets)
        store.apply(Manifest(manifest.embedding, manifest.dim, manifest.chunking), [], doc_ids)
        return doc_ids


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
    report.embedded_chunks += len(missing)
    report.reused_chunks += sum(map(len, chunk_lists)) - len(missing)
    # In this process, or in config.workers processes / on Ray (rag/embed_workers.py)
    cache.update(embed_missing(missing, embedder, config, progress)[0])
    return [DocumentEntry(doc.meta_dict(), doc.paragraphs, chunks,
                          np.array([cache[c.content_hash(embedder.spec)] for c in chunks],
                                   dtype=np.float32).reshape(-1, embedder.dim))
            for doc, chunks in zip(docs, chunk_lists)]
