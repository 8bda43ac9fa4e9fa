"""How each named configuration (eval/configs.py) retrieves.

Indexes live in a shared cache folder (``.rag/eval-indexes``) keyed by what shapes them
(corpus, embedding, chunking, and the code), so reruns reuse them and configurations that
differ only at query time (bm25, dense, hybrid) share one. Outdated ones are not deleted.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import uuid
from pathlib import Path

import numpy as np
from tqdm import tqdm

import embeddings
import rag
from embeddings import get_embedder
from rag import Config, Engine
from rag.documents import READERS, file_hash, find_files
from rag.indexer import chunking_settings

INDEX_CACHE = Path(".rag/eval-indexes")


def digest(value) -> str:
    """A stable hash of a JSON-serialisable value."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def code_fingerprint() -> str:
    """Hash of the rag and embeddings source: indexes and results made by other code are
    stale (an index keeps the chunks and headers the code of its day produced)."""
    files = sorted(p for package in (rag, embeddings) for p in Path(package.__file__).parent.glob("*.py"))
    return digest([(p.name, p.read_text(encoding="utf-8")) for p in files])


def corpus_fingerprint(corpus: str | Path) -> list[tuple[str, str]]:
    """(file, content hash) of every document: cached results are stale once it changes."""
    corpus = Path(corpus)
    return [(str(p.relative_to(corpus)) if corpus.is_dir() else p.name, file_hash(p))
            for p in find_files([corpus])]


def open_engine(config: Config, cache: Path, progress: bool) -> Engine:
    """An Engine on this configuration's cached index, brought up to date with the corpus.

    An index is made per shape of index (corpus, embedding, chunking) and per version of
    the code, since the code decides the paragraphs and chunks. A new version starts
    from a copy of the newest index of the same shape and re-reads every document: only
    chunks whose text changed are embedded again (vectors are reused by content hash).
    """
    shape = {"corpus": str(Path(config.corpus).resolve()), "embedding": config.embedding,
             **chunking_settings(config)}
    family = f"engine-{digest(shape)[:8]}"
    index = cache / f"{family}-{digest(code_fingerprint())[:8]}"
    engine = Engine(config.replace(index=str(index)))
    if not index.exists():
        earlier = sorted(cache.glob(f"{family}-*"), key=lambda p: p.stat().st_mtime, reverse=True)
        if earlier:
            shutil.copytree(earlier[0], index)
            engine.index(rebuild=True, progress=progress)  # new paragraphs, vectors reused
            return engine
    engine.index(progress=progress)  # incremental: nothing is re-embedded when nothing changed
    return engine


def raw_text(path: Path) -> str:
    """The whole extracted text of a file, read by the project's reader (so GBK, .docx and
    .pdf work) but without its paragraph structure."""
    text, _ = READERS[path.suffix.lower()](path)
    return text


class NaivePipeline:
    """The reference point: what a plain LangChain tutorial pipeline does.

    Whole files are cut by ``RecursiveCharacterTextSplitter(chunk_size=500,
    chunk_overlap=50)``, with no headers and no paragraph structure, embedded with the
    same embeddings, and searched top-k by cosine. The vector index is faiss
    ``IndexFlatIP`` used directly, not langchain-community's FAISS wrapper, which would
    add a dependency (and a dozen transitive ones) for the same exact search.
    """

    chunk_size, chunk_overlap = 500, 50
    batch = 16

    def __init__(self, config: Config, cache: Path, progress: bool):
        import faiss
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        self.embedder = get_embedder(config.embedding)
        files = find_files([Path(config.corpus)])
        shape = {"embedding": config.embedding, "size": self.chunk_size, "overlap": self.chunk_overlap,
                 "files": [(p.name, file_hash(p)) for p in files], "code": code_fingerprint()}
        folder = cache / f"naive-{digest(shape)[:12]}"
        if (folder / "vectors.npy").is_file():
            self.chunks = json.loads((folder / "chunks.json").read_text(encoding="utf-8"))
            vectors = np.load(folder / "vectors.npy")
        else:
            splitter = RecursiveCharacterTextSplitter(chunk_size=self.chunk_size,
                                                      chunk_overlap=self.chunk_overlap)
            self.chunks = [[p.name, piece] for p in files for piece in splitter.split_text(raw_text(p))]
            vectors = self._embed([text for _, text in self.chunks], progress)
            self._save(folder, vectors)
        self.index = faiss.IndexFlatIP(vectors.shape[1])  # inner product of unit vectors = cosine
        self.index.add(vectors)

    def _embed(self, texts: list[str], progress: bool) -> np.ndarray:
        vectors = []
        with tqdm(total=len(texts), desc="embedding (naive)", unit="chunk", file=sys.stderr,
                  disable=not progress) as bar:
            for start in range(0, len(texts), self.batch):
                vectors.extend(self.embedder.embed_documents(texts[start:start + self.batch]))
                bar.update(len(texts[start:start + self.batch]))
        return np.array(vectors, dtype=np.float32)

    def _save(self, folder: Path, vectors: np.ndarray) -> None:
        # Written beside and renamed into place, so an interrupted run leaves no half cache.
        tmp = folder.with_name(f"{folder.name}.tmp-{uuid.uuid4().hex[:8]}")
        tmp.mkdir(parents=True)
        (tmp / "chunks.json").write_text(json.dumps(self.chunks, ensure_ascii=False), encoding="utf-8")
        np.save(tmp / "vectors.npy", vectors)
        os.replace(tmp, folder)

    def search(self, query: str, k: int) -> list[dict]:
        """Top-k chunks in the shape of ``rag search --json`` (no section, paragraph 0)."""
        vector = np.array([self.embedder.embed_query(query)], dtype=np.float32)
        scores, ids = self.index.search(vector, min(k, self.index.ntotal))
        return [{"rank": rank, "score": round(float(score), 6), "doc_id": self.chunks[i][0],
                 "doc_title": self.chunks[i][0], "section": "", "paragraph": 0, "text": self.chunks[i][1]}
                for rank, (i, score) in enumerate(zip(ids[0], scores[0]), start=1) if i >= 0]
