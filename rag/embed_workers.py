"""Embedding the chunks an index write needs, in this process, in N processes, or on Ray.

Embedding is the cost of indexing (about 20 chunks/s on 2 cores with the default model),
so a large library is embedded in parallel:

* ``workers = 1`` (default): in this process, in batches of ``EMBED_BATCH``.
* ``workers = N`` (``rag index --workers N``): N processes on this machine, each loading
  the model once and using ``cores / N`` threads.
* ``ray_address`` (``rag index --ray ADDRESS``): a Ray Data ``map_batches`` job over a
  cluster (``auto``, ``ray://head:10001``; ``local`` starts Ray inside this process), one
  model per actor, ``workers`` actors.

Texts are keyed by their chunk content hash (backend + indexed text). In the parallel modes
each finished batch is appended to a journal beside the index (``<index>.embed-journal/``,
one ``.npz`` per batch, written to a temporary name and renamed), so a re-run after a
failure embeds only what is missing. A run drops the journal's entries it no longer needs,
so the journal holds at most one unfinished job.
"""
from __future__ import annotations

import os
import sys
import uuid
import zipfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from embeddings import EmbeddingError

EMBED_BATCH = 16  # texts per encode call in this process
PARALLEL_BATCH = 64  # texts per task sent to a worker process or a Ray actor


class EmbedError(EmbeddingError):
    """The parallel embedding job could not run or finish; the message says why (what was
    finished is in the journal, and a re-run resumes from it)."""


@dataclass
class EmbedRun:
    """What one call did: texts embedded now, and texts found in the journal."""
    embedded: int = 0
    resumed: int = 0


class Journal:
    """Finished batches of vectors by content hash, on disk, for resuming a failed job."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def load(self, wanted: set[str]) -> dict[str, np.ndarray]:
        """The journal's vectors for ``wanted`` keys; shards holding none of them are
        removed (their work is in the index, or was for texts no longer needed)."""
        found: dict[str, np.ndarray] = {}
        if not self.folder.is_dir():
            return found
        for shard in sorted(self.folder.glob("*.npz")):
            try:
                with np.load(shard, allow_pickle=False) as data:
                    keys, vectors = [str(k) for k in data["keys"]], data["vectors"]
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                shard.unlink(missing_ok=True)  # a torn or damaged shard is redone, not trusted
                continue
            hits = [(k, v) for k, v in zip(keys, vectors) if k in wanted]
            if not hits:
                shard.unlink(missing_ok=True)
            found.update(hits)
        for leftover in self.folder.glob("*.tmp"):
            leftover.unlink(missing_ok=True)
        return found

    def append(self, keys: list[str], vectors: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex[:12]
        tmp = self.folder / f"{name}.tmp"
        with open(tmp, "wb") as fh:
            np.savez(fh, keys=np.array(keys), vectors=np.asarray(vectors, dtype=np.float32))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.folder / f"{name}.npz")


def journal_folder(index: str) -> Path:
    return Path(f"{str(index).rstrip('/')}.embed-journal")


def embed_missing(texts: dict[str, str], embedder, config, progress: bool = True
                  ) -> tuple[dict[str, np.ndarray], EmbedRun]:
    """Vectors for ``texts`` (content hash → indexed text), by the configured means."""
    run = EmbedRun()
    workers = int(getattr(config, "workers", 1))
    if workers < 1:  # refused even when nothing needs embedding: the setting is wrong
        from .config import ConfigError
        raise ConfigError(f"workers = {workers}: embedding needs at least 1 worker")
    if not texts:
        return {}, run
    ray_address = (getattr(config, "ray_address", "") or "").strip()
    if workers == 1 and not ray_address:
        vectors = _embed_here(texts, embedder, progress)
        run.embedded = len(vectors)
        return vectors, run
    journal = Journal(journal_folder(config.index))
    vectors = journal.load(set(texts))
    run.resumed = len(vectors)
    todo = [k for k in texts if k not in vectors]
    with tqdm(total=len(texts), initial=run.resumed, desc="embedding", unit="chunk", file=sys.stderr,
              disable=not progress) as bar:
        batches = (_ray_batches(todo, texts, embedder.spec, workers, ray_address) if ray_address
                   else _process_batches(todo, texts, embedder.spec, workers))
        for keys, batch in batches:
            journal.append(keys, batch)  # before anything else: a crash after this keeps it
            vectors.update(zip(keys, batch))
            run.embedded += len(keys)
            bar.update(len(keys))
    return vectors, run


def _embed_here(texts: dict[str, str], embedder, progress: bool) -> dict[str, np.ndarray]:
    keys = list(texts)
    out: dict[str, np.ndarray] = {}
    with tqdm(total=len(keys), desc="embedding", unit="chunk", file=sys.stderr,
              disable=not progress) as bar:
        for start in range(0, len(keys), EMBED_BATCH):
            batch = keys[start:start + EMBED_BATCH]
            out.update(zip(batch, embedder.encode([texts[k] for k in batch])))
            bar.update(len(batch))
    return out


# -- processes on this machine -------------------------------------------------------------
_worker_embedder = None


def _threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def _init_worker(spec: str, threads: int) -> None:
    # Before the model's library loads: its OpenMP pool reads this once.
    os.environ["OMP_NUM_THREADS"] = str(threads)
    global _worker_embedder
    from embeddings import get_embedder
    _worker_embedder = get_embedder(spec)


def _encode_in_worker(keys: list[str], texts: list[str]) -> tuple[list[str], np.ndarray]:
    return keys, _worker_embedder.encode(texts)


def _process_batches(todo: list[str], texts: dict[str, str], spec: str, workers: int):
    import multiprocessing
    # spawn, not fork: the parent may hold the model and OpenMP threads, which a fork
    # would copy in an unusable state.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(spec, _threads_per_worker(workers))) as pool:
        futures = [pool.submit(_encode_in_worker, todo[i:i + PARALLEL_BATCH],
                               [texts[k] for k in todo[i:i + PARALLEL_BATCH]])
                   for i in range(0, len(todo), PARALLEL_BATCH)]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BrokenProcessPool as exc:
            raise EmbedError(f"an embedding worker died ({exc}); what was finished is kept, run "
                             "`rag index` again to resume") from None
        finally:
            for f in futures:
                f.cancel()


# -- Ray Data ------------------------------------------------------------------------------
class RayEmbedBatch:
    """The Ray Data ``map_batches`` callable: one model per actor."""

    def __init__(self, spec: str, threads: int):
        _init_worker(spec, threads)
        self.embedder = _worker_embedder

    def __call__(self, batch: dict) -> dict:
        vectors = self.embedder.encode([str(t) for t in batch["text"]])
        return {"key": batch["key"], "vector": vectors}


def _ray_batches(todo: list[str], texts: dict[str, str], spec: str, workers: int, address: str):
    try:
        import ray
    except ImportError:
        raise EmbedError("--ray needs Ray: pip install -e '.[scale]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        try:
            if address == "local":
                ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            else:
                ray.init(address=address, log_to_driver=False)
        except Exception as exc:  # Ray's connection errors have no common base
            raise EmbedError(f"cannot reach the Ray cluster at {address!r}: {exc}") from None
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        cpus_each = float(ray.cluster_resources().get("CPU", 1)) / workers
        dataset = ray.data.from_items([{"key": k, "text": texts[k]} for k in todo])
        embedded = dataset.map_batches(
            RayEmbedBatch, fn_constructor_args=(spec, max(1, int(cpus_each))),
            batch_size=PARALLEL_BATCH, concurrency=workers, num_cpus=cpus_each, batch_format="numpy")
        # Streaming: batches arrive as actors finish them and go to the journal at once.
        try:
            for batch in embedded.iter_batches(batch_size=PARALLEL_BATCH, batch_format="numpy"):
                yield [str(k) for k in batch["key"]], np.asarray(batch["vector"], dtype=np.float32)
        except ray.exceptions.RayError as exc:
            raise EmbedError(f"the Ray embedding job failed ({type(exc).__name__}: {str(exc)[:300]}); "
                             "what was finished is kept, run `rag index --ray` again to resume") from None
    finally:
        if started_here:
            ray.shutdown()
