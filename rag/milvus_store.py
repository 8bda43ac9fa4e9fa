"""The ``Store`` interface over Milvus (``store = "milvus"``), for libraries beyond one machine.

``milvus_uri`` names the server: a local path ending in ``.db`` is milvus-lite, embedded in
this process (``pip install milvus-lite``, what the tests use); ``http://host:19530`` is a
Milvus standalone or cluster. Nothing else changes between the two.

An index is two collections:

* ``<name>``: one row per chunk: its paragraph id, document id, the document's content
  hash, the chunk's content hash, the cited text, the indexed text (header + text) and the
  paragraph it belongs to (so a hit resolves without a second round trip), the dense
  vector, and a sparse vector that Milvus computes itself with its BM25 function over a
  jieba analyzer. The engine fuses the two rankings (RRF) and collapses chunks to
  paragraphs, as with the files.
* ``<name>_records``: the index's head (its generation number, embedding, chunking), one
  record per document version (its manifest entry) and one per paragraph.

Milvus has no multi-row transactions, so a write is made all-or-nothing with generations:
every row carries the generation ``gen`` that wrote it, and the head record, written last
by a single-row upsert, names the committed generation G. Readers search with
``gen <= G`` and keep only rows of each document's live version, so rows of a write that
crashed (``gen > G``) are never seen and the previous documents stay searchable; the next
writer deletes them. Rows a commit superseded (older versions, removed documents) are
deleted right after it, and again by any later writer if the process died in between.

milvus-lite differences from a Milvus server, each pinned by tests/test_milvus.py: the
jieba analyzer is given as ``{"tokenizer": "jieba"}`` (``{"type": "chinese"}`` is refused);
``text_match`` ignores the field's analyzer (it splits on ``\\w+``); BM25 scores come back
negated; BM25 statistics (IDF, average length) are per segment, not global; filter
templates (``filter_params``) are not parsed; a ``.db`` is open in one process at a time;
``langchain-milvus``'s default index parameters (AUTOINDEX) are refused for the BM25
field unless index and search parameters are given (``MilvusStore.langchain_vectorstore``
gives them).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import threading
import time
from pathlib import Path

import numpy as np

from .chunking import Chunk
from .documents import Paragraph
from .store import DocumentEntry, IndexBusy, IndexStateError, IndexView, Manifest, Salvage, Store

HEAD_KEY = "head"
LAYOUT_VERSION = 1  # of the collections below; a head of another version needs a rebuild
JIEBA_ANALYZER = {"tokenizer": "jieba"}  # what milvus-lite and Milvus 2.5+ both accept
# Milvus caps a VARCHAR at 65,535 bytes; ids and texts are bounded well below that.
MAX_ID_BYTES = 1024
MAX_TEXT_BYTES = 16_384
MAX_BODY_BYTES = 65_535
MAX_SEARCH_LIMIT = 16_384  # Milvus's topk limit
BATCH_ROWS = 2_000  # rows per insert request (a gRPC message stays well under its 64 MB cap)
GEN_SHIFT = 32  # chunk id = generation << 32 | position in the write: unique, no counter


def collection_name(index: str) -> str:
    """A Milvus collection name for the configured index (its folder's name): ASCII
    letters, digits and underscores, starting with a letter."""
    stem = re.sub(r"[^A-Za-z0-9_]", "_", Path(index).name or "index").strip("_") or "index"
    return f"rag_{stem}"[:200]


def is_server_uri(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "tcp://", "unix:"))


def _literal(value: str) -> str:
    """A string literal for a Milvus filter expression (lite has no filter templates)."""
    return json.dumps(value, ensure_ascii=False)


def _in(field: str, values) -> str:
    return f"{field} in [{', '.join(_literal(v) for v in values)}]"


class MilvusView(IndexView):
    """One committed generation of a Milvus index.

    The manifest and the live version of each document are read once; chunks and
    paragraphs are fetched on demand and cached, so opening a view of a large index costs
    one pass over the document records, not over the chunks.
    """

    def __init__(self, store: "MilvusStore", gen: int, head: dict, records: list[dict]):
        self._store, self.gen = store, gen
        latest: dict[str, dict] = {}
        for r in records:  # the newest version of each document at this generation
            if r["gen"] <= gen and (r["doc_id"] not in latest or r["gen"] > latest[r["doc_id"]]["gen"]):
                latest[r["doc_id"]] = r
        live = {d: r for d, r in latest.items() if not r["deleted"]}
        self._live_gen = {d: r["gen"] for d, r in live.items()}
        bodies = {d: json.loads(r["body"]) for d, r in sorted(live.items())}
        self._chunk_counts = {d: b.pop("_chunks", 0) for d, b in bodies.items()}
        self.manifest = Manifest(embedding=head["embedding"], dim=int(head["dim"]),
                                 chunking=head["chunking"], documents=bodies)
        self._chunks: dict[int, Chunk] = {}
        self._paragraphs: dict[str, Paragraph] = {}
        self._lock = threading.Lock()

    # -- reading ------------------------------------------------------------------
    def _visible(self, doc_ids: set[str] | None) -> str:
        expr = f"gen <= {self.gen}"
        if doc_ids is not None:
            expr += " and " + _in("doc_id", sorted(doc_ids))
        return expr

    def _is_live(self, row: dict) -> bool:
        return self._live_gen.get(row["doc_id"]) == row["gen"]

    def _remember(self, row: dict) -> None:
        chunk = Chunk(row["paragraph_id"], row["doc_id"], row["chunk_text"], row["text"])
        paragraph = Paragraph.from_dict(json.loads(row["paragraph"]))
        with self._lock:
            self._chunks[int(row["id"])] = chunk
            self._paragraphs.setdefault(paragraph.id, paragraph)

    _HIT_FIELDS = ["doc_id", "gen", "paragraph_id", "chunk_text", "text", "paragraph"]

    def _search(self, data, field: str, params: dict, n: int, doc_ids) -> list[tuple[int, float]]:
        if doc_ids is not None:
            doc_ids = {d for d in doc_ids if d in self._live_gen}
            if not doc_ids:
                return []
        n = min(n, len(self), MAX_SEARCH_LIMIT)
        if n <= 0:
            return []
        limit = n
        while True:
            # Superseded rows not yet deleted (a writer between commit and clean-up, or one
            # that died there) are dropped here; read deeper if they took places.
            result = self._store.client.search(
                self._store.chunks, data=[data], anns_field=field, limit=limit,
                filter=self._visible(doc_ids), search_params=params, output_fields=self._HIT_FIELDS)[0]
            hits = []
            for hit in result:
                row = dict(hit["entity"], id=hit["id"])
                if self._is_live(row):
                    self._remember(row)
                    hits.append((int(hit["id"]), float(hit["distance"])))
            if len(hits) >= n or len(result) < limit or limit >= MAX_SEARCH_LIMIT:
                return hits[:n]
            limit = min(limit * 4, MAX_SEARCH_LIMIT)

    def dense_search(self, vector, n, doc_ids=None):
        vector = np.asarray(vector, dtype=np.float32).reshape(-1).tolist()
        return self._search(vector, "dense", {"metric_type": "IP"}, n, doc_ids)

    def keyword_search(self, tokens, n, doc_ids=None):
        if not tokens:
            return []
        # Milvus tokenises the query with the field's own analyzer (jieba); the tokens the
        # retriever made are given as words so that stop words it dropped stay dropped.
        hits = self._search(" ".join(tokens), "sparse", {"metric_type": "BM25"}, n, doc_ids)
        # milvus-lite returns BM25 scores negated (best = most negative); a server returns
        # them positive. The interface promises positive scores, best first.
        return [(pos, abs(score)) for pos, score in hits if score != 0]

    def chunk(self, position):
        position = int(position)
        if position not in self._chunks:
            rows = self._store.client.get(self._store.chunks, ids=[position], output_fields=self._HIT_FIELDS)
            if not rows:
                raise KeyError(f"no chunk {position} in the index")
            self._remember(rows[0])
        return self._chunks[position]

    def paragraph(self, paragraph_id):
        if paragraph_id not in self._paragraphs:
            doc_id = paragraph_id.rsplit("#", 1)[0]
            gen = self._live_gen.get(doc_id)
            rows = [] if gen is None else self._store.client.get(
                self._store.records, ids=[_paragraph_key(gen, paragraph_id)], output_fields=["body"])
            if not rows:
                raise KeyError(f"no paragraph {paragraph_id} in the index")
            with self._lock:
                self._paragraphs[paragraph_id] = Paragraph.from_dict(json.loads(rows[0]["body"]))
        return self._paragraphs[paragraph_id]

    def _document_paragraphs(self, doc_ids: list[str]) -> list[Paragraph]:
        out = []
        for start in range(0, len(doc_ids), 500):
            part = doc_ids[start:start + 500]
            rows = self._store.query_all(self._store.records, f'kind == "para" and {_in("doc_id", part)}',
                                         ["doc_id", "gen", "body"])
            out += [Paragraph.from_dict(json.loads(r["body"])) for r in rows if self._is_live(r)]
        return sorted(out, key=lambda p: (p.doc_id, p.number))

    def paragraphs(self):
        return self._document_paragraphs(sorted(self._live_gen))

    def document(self, doc_id):
        meta = self.manifest.documents[doc_id]
        gen = self._live_gen[doc_id]
        rows = self._store.query_all(self._store.chunks, f"gen == {gen} and doc_id == {_literal(doc_id)}",
                                     ["id", *self._HIT_FIELDS, "dense"])
        rows.sort(key=lambda r: int(r["id"]))
        chunks = [Chunk(r["paragraph_id"], r["doc_id"], r["chunk_text"], r["text"]) for r in rows]
        vectors = np.array([r["dense"] for r in rows], dtype=np.float32).reshape(-1, self.manifest.dim)
        return DocumentEntry(meta=meta, paragraphs=self._document_paragraphs([doc_id]),
                             chunks=chunks, vectors=vectors)

    def __len__(self):
        return sum(self._chunk_counts.values())


def _paragraph_key(gen: int, paragraph_id: str) -> str:
    return f"para:{gen}:{paragraph_id}"


class MilvusStore(Store):
    """An index held by Milvus (milvus-lite for a ``.db`` path, else a server)."""

    def __init__(self, uri: str, name: str = "rag_index", lock_path: str | os.PathLike | None = None):
        uri = str(uri)
        if not is_server_uri(uri) and not uri.endswith(".db"):
            raise IndexStateError(f"milvus_uri {uri!r} is neither a server (http://host:19530) nor a "
                                  "milvus-lite file (a path ending in .db)")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,200}", name):
            raise IndexStateError(f"{name!r} is not a Milvus collection name (letters, digits, _)")
        self.uri, self.chunks, self.records = uri, name, f"{name}_records"
        # One writer at a time: milvus-lite already allows one process per .db; for a
        # server, writers on this machine share a lock file (several writing machines
        # need a coordinator of their own, docs/scaling.md).
        self._lock_path = Path(lock_path) if lock_path else (
            Path(f"{uri}.writer.lock") if not is_server_uri(uri) else None)
        self._client = None
        self._client_lock = threading.Lock()
        self._writer = threading.RLock()
        self._writer_depth = 0
        self._lock_fd: int | None = None
        self._view: MilvusView | None = None
        self._ready = False  # the collections are known to exist

    def __repr__(self):
        return f"MilvusStore({self.uri!r}, {self.chunks!r})"

    # -- connection ---------------------------------------------------------------
    @property
    def client(self):
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self._connect()
        return self._client

    def _connect(self):
        try:
            from pymilvus import MilvusClient
        except ImportError:
            raise IndexStateError("store = 'milvus' needs pymilvus: pip install -e '.[scale]'") from None
        if not is_server_uri(self.uri):
            Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
            # milvus-lite has no timestamp service: at every query iterator its gRPC server
            # logs the unimplemented call and pymilvus warns that it falls back to its own.
            logging.getLogger("pymilvus.client.iterator.query_iterator").setLevel(logging.ERROR)
            logging.getLogger("grpc._server").addFilter(_drop_unimplemented)
        try:
            return MilvusClient(uri=self.uri)
        except Exception as exc:  # pymilvus raises its own and gRPC's errors
            raise IndexStateError(f"cannot open Milvus at {self.uri}: {_reason(exc)}") from None

    def close(self) -> None:
        """Release the connection (and, for milvus-lite, the .db for other processes)."""
        if self._client is not None:
            self._client.close()
            self._client, self._ready = None, False
            if not is_server_uri(self.uri):
                from milvus_lite.server_manager import server_manager_instance
                server_manager_instance.release_server(self.uri)
        self._view = None

    def query_all(self, collection: str, expr: str, fields: list[str]) -> list[dict]:
        """Every row matching ``expr`` (an iterator: Milvus caps one query at 16,384 rows)."""
        iterator = self.client.query_iterator(collection, batch_size=5000, filter=expr, output_fields=fields)
        rows: list[dict] = []
        try:
            while batch := iterator.next():
                rows.extend(batch)
        finally:
            iterator.close()
        return rows

    # -- reading --------------------------------------------------------------------
    def _head(self) -> dict | None:
        try:
            if not self._ready:
                if not self.client.has_collection(self.records):
                    return None
                for name in (self.chunks, self.records):
                    # milvus-lite reopens a .db with its collections released
                    if self.client.has_collection(name):
                        self.client.load_collection(name)
                self._ready = True
            rows = self.client.get(self.records, ids=[HEAD_KEY], output_fields=["gen", "body"])
        except IndexStateError:
            raise
        except Exception as exc:
            raise IndexStateError(f"cannot read the index from Milvus at {self.uri}: {_reason(exc)}") from None
        if not rows:
            return None
        head = json.loads(rows[0]["body"])
        head["gen"] = int(rows[0]["gen"])
        return head

    def exists(self) -> bool:
        return self._head() is not None

    def view(self) -> MilvusView:
        head = self._head()
        fix = f"rebuild it with `rag index --rebuild` (Milvus {self.uri}, collection {self.chunks})"
        if head is None:
            raise IndexStateError(f"no index in Milvus at {self.uri} (collection {self.chunks}); "
                                  "run `rag index` to build it")
        if int(head.get("layout", 0)) != LAYOUT_VERSION:
            raise IndexStateError(f"the index was written in Milvus layout {head.get('layout')}, this "
                                  f"version reads layout {LAYOUT_VERSION}; {fix}")
        current = self._view
        if current is None or current.gen != head["gen"]:
            records = self.query_all(self.records, f'kind == "doc" and gen <= {head["gen"]}',
                                     ["doc_id", "gen", "deleted", "body"])
            current = self._view = MilvusView(self, head["gen"], head, records)
        return current

    # -- writing --------------------------------------------------------------------
    @contextlib.contextmanager
    def writing(self, timeout: float = 120.0):
        """One writer at a time: threads of this process by an RLock, processes on this
        machine by a lock file (milvus-lite lets one process open a .db anyway)."""
        if not self._writer.acquire(timeout=max(timeout, 0)):
            raise IndexBusy(f"another thread of this process is writing {self}; waited {timeout:.0f} s")
        try:
            if self._writer_depth == 0 and self._lock_path is not None:
                self._lock_fd = self._acquire_file_lock(timeout)
            self._writer_depth += 1
            try:
                yield
            finally:
                self._writer_depth -= 1
                if self._writer_depth == 0 and self._lock_fd is not None:
                    os.close(self._lock_fd)
                    self._lock_fd = None
        finally:
            self._writer.release()

    def _acquire_file_lock(self, timeout: float) -> int:
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise IndexBusy(f"another writer is updating {self}; waited {timeout:.0f} s "
                                    f"(lock file: {self._lock_path})") from None
                time.sleep(0.05)
        return fd

    def salvage(self) -> Salvage:
        try:
            view = self.view()
        except IndexStateError as exc:
            return Salvage(None, {}, [str(exc)])
        entries, problems = {}, []
        for doc_id in view.manifest.documents:
            try:
                entries[doc_id] = view.document(doc_id)
            except Exception as exc:  # whatever the server says, a repair re-reads the file
                problems.append(f"{doc_id}: its chunks cannot be read from {self} ({_reason(exc)})")
        return Salvage(view.manifest, entries, problems)

    def _create_collections(self, dim: int) -> None:
        from pymilvus import DataType, Function, FunctionType
        c = self.client
        schema = c.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("gen", DataType.INT64)
        schema.add_field("doc_id", DataType.VARCHAR, max_length=MAX_ID_BYTES)
        schema.add_field("version", DataType.VARCHAR, max_length=64)  # the document's content hash
        schema.add_field("paragraph_id", DataType.VARCHAR, max_length=MAX_ID_BYTES + 16)
        schema.add_field("content_hash", DataType.VARCHAR, max_length=64)  # the chunk's (vector cache key)
        schema.add_field("chunk_text", DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
        schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT_BYTES,
                         enable_analyzer=True, analyzer_params=JIEBA_ANALYZER)
        schema.add_field("paragraph", DataType.VARCHAR, max_length=MAX_BODY_BYTES)
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(Function(name="bm25", function_type=FunctionType.BM25,
                                     input_field_names=["text"], output_field_names=["sparse"]))
        index = c.prepare_index_params()
        index.add_index("dense", index_type="FLAT", metric_type="IP")  # unit vectors: IP = cosine
        index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        c.create_collection(self.chunks, schema=schema, index_params=index, consistency_level="Strong")

        schema = c.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=2 * MAX_ID_BYTES)
        schema.add_field("kind", DataType.VARCHAR, max_length=8)  # head | doc | para
        schema.add_field("gen", DataType.INT64)
        schema.add_field("doc_id", DataType.VARCHAR, max_length=MAX_ID_BYTES)
        schema.add_field("deleted", DataType.BOOL)  # a removed document's tombstone
        schema.add_field("body", DataType.VARCHAR, max_length=MAX_BODY_BYTES)
        schema.add_field("mark", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs a vector field
        index = c.prepare_index_params()
        index.add_index("mark", index_type="FLAT", metric_type="L2")
        c.create_collection(self.records, schema=schema, index_params=index, consistency_level="Strong")

    def _drop(self) -> None:
        self._ready = False
        for name in (self.chunks, self.records):
            if self.client.has_collection(name):
                self.client.drop_collection(name)

    def apply(self, manifest, upserts, deletions, replace_all=False):
        rows = _rows_of(upserts, manifest.embedding)  # checked before anything is written
        with self.writing():
            head = self._head()
            if head is not None and replace_all and (int(head["dim"]) != manifest.dim
                                                     or int(head.get("layout", 0)) != LAYOUT_VERSION):
                self._drop()  # a rebuild with another vector size or layout
                head = None
            if head is not None and int(head.get("layout", 0)) != LAYOUT_VERSION:
                raise IndexStateError(f"the index was written in Milvus layout {head.get('layout')}, this "
                                      f"version writes layout {LAYOUT_VERSION}; rebuild with `rag index --rebuild`")
            if head is not None and int(head["dim"]) != manifest.dim:
                raise IndexStateError(f"the index holds {head['dim']}-dimensional vectors, not "
                                      f"{manifest.dim}; rebuild with `rag index --rebuild`")
            if head is None:
                self._drop()
                self._create_collections(manifest.dim)
                committed, live = 0, {}
            else:
                committed = head["gen"]
                self._discard_uncommitted(committed)
                live = self.view()._live_gen
            gen = committed + 1
            replaced = {e.meta["doc_id"] for e in upserts}
            removed = set(live) - replaced if replace_all else set(deletions) & set(live)

            chunk_rows, records = [], []
            for seq, row in enumerate(r for doc_rows in rows for r in doc_rows["chunks"]):
                chunk_rows.append(dict(row, id=(gen << GEN_SHIFT) | seq, gen=gen))
            for doc in rows:
                records.append(dict(doc["doc"], gen=gen, key=f"doc:{gen}:{doc['doc']['doc_id']}"))
                records += [dict(p, gen=gen, key=_paragraph_key(gen, p["paragraph_id"]))
                            for p in doc["paragraphs"]]
            records += [_record(f"doc:{gen}:{d}", "doc", d, "{}", deleted=True, gen=gen) for d in sorted(removed)]
            for p in records:
                p.pop("paragraph_id", None)
            self._insert(self.chunks, chunk_rows)
            self._insert(self.records, records)
            # The commit point: one single-row upsert of the head names the new generation.
            body = {"layout": LAYOUT_VERSION, "embedding": manifest.embedding, "dim": manifest.dim,
                    "chunking": manifest.chunking}
            self.client.upsert(self.records, [_record(HEAD_KEY, "head", "", json.dumps(body), gen=gen)])
            self._view = None
            self._collect_garbage(gen)
            manifest.documents = dict(self.view().manifest.documents)

    def _insert(self, collection: str, rows: list[dict]) -> None:
        for start in range(0, len(rows), BATCH_ROWS):
            self.client.insert(collection, rows[start:start + BATCH_ROWS])

    def _discard_uncommitted(self, committed: int) -> None:
        """Rows of a write that died before its commit (generation above the head's)."""
        self.client.delete(self.chunks, filter=f"gen > {committed}")
        self.client.delete(self.records, filter=f'kind != "head" and gen > {committed}')

    def _collect_garbage(self, committed: int) -> None:
        """Delete what no reader of generation ``committed`` can see: older versions of
        each document and removed documents, with their chunks and paragraphs."""
        records = self.query_all(self.records, f'kind == "doc" and gen <= {committed}', ["doc_id", "gen", "deleted"])
        newest: dict[str, dict] = {}
        for r in records:
            if r["doc_id"] not in newest or r["gen"] > newest[r["doc_id"]]["gen"]:
                newest[r["doc_id"]] = r
        stale: dict[int, list[str]] = {}
        for r in records:
            keep = newest[r["doc_id"]]
            if r["gen"] != keep["gen"] or keep["deleted"]:
                stale.setdefault(int(r["gen"]), []).append(r["doc_id"])
        for gen, doc_ids in stale.items():
            for start in range(0, len(doc_ids), 500):
                part = _in("doc_id", doc_ids[start:start + 500])
                self.client.delete(self.chunks, filter=f"gen == {gen} and {part}")
                self.client.delete(self.records, filter=f'kind != "head" and gen == {gen} and {part}')

    # -- LangChain ------------------------------------------------------------------
    def langchain_vectorstore(self, embedding, **kwargs):
        """The chunk collection as a ``langchain_milvus.Milvus`` vector store (dense and
        BM25, as LangChain users plug Milvus in). Index and search parameters are given:
        langchain-milvus's defaults (AUTOINDEX) are refused by milvus-lite."""
        from langchain_milvus import BM25BuiltInFunction, Milvus
        return Milvus(embedding_function=embedding, collection_name=self.chunks,
                      connection_args={"uri": self.uri}, primary_field="id", text_field="text",
                      vector_field=["dense", "sparse"],
                      builtin_function=BM25BuiltInFunction(input_field_names="text", output_field_names="sparse",
                                                           analyzer_params=JIEBA_ANALYZER),
                      index_params=[{"index_type": "FLAT", "metric_type": "IP"},
                                    {"index_type": "SPARSE_INVERTED_INDEX", "metric_type": "BM25"}],
                      search_params=[{"metric_type": "IP"}, {"metric_type": "BM25"}],
                      consistency_level="Strong", **kwargs)


def _record(key: str, kind: str, doc_id: str, body: str, deleted: bool = False, gen: int = 0) -> dict:
    return {"key": key, "kind": kind, "gen": gen, "doc_id": doc_id, "deleted": deleted, "body": body,
            "mark": [0.0, 0.0]}


def _check_size(value: str, limit: int, what: str) -> str:
    if len(value.encode()) > limit:
        raise ValueError(f"{what} is {len(value.encode())} bytes; Milvus stores at most {limit}")
    return value


def _rows_of(entries: list[DocumentEntry], spec: str) -> list[dict]:
    """The rows of each document, checked against Milvus's field limits before writing."""
    out = []
    for e in entries:
        doc_id = _check_size(e.meta["doc_id"], MAX_ID_BYTES, "a document id")
        paragraphs = {p.id: json.dumps(p.to_dict(), ensure_ascii=False) for p in e.paragraphs}
        for pid, body in paragraphs.items():
            _check_size(body, MAX_BODY_BYTES, f"paragraph {pid}")
        chunks = []
        for chunk, vector in zip(e.chunks, e.vectors):
            chunks.append({"doc_id": doc_id, "version": e.meta.get("content_hash", "")[:64],
                           "paragraph_id": chunk.paragraph_id, "content_hash": chunk.content_hash(spec),
                           "chunk_text": _check_size(chunk.text, MAX_TEXT_BYTES, f"a chunk of {chunk.paragraph_id}"),
                           "text": _check_size(chunk.indexed_text, MAX_TEXT_BYTES, f"a chunk of {chunk.paragraph_id}"),
                           "paragraph": paragraphs[chunk.paragraph_id],
                           "dense": np.asarray(vector, dtype=np.float32).tolist()})
        body = _check_size(json.dumps(dict(e.meta, _chunks=len(chunks)), ensure_ascii=False),
                           MAX_BODY_BYTES, f"the record of {doc_id}")
        out.append({"doc": _record("", "doc", doc_id, body),
                    "paragraphs": [dict(_record("", "para", doc_id, body), paragraph_id=pid)
                                   for pid, body in paragraphs.items()],
                    "chunks": chunks})
    return out


def _drop_unimplemented(record: logging.LogRecord) -> bool:
    return "Method not implemented" not in record.getMessage()


def _reason(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return f"{type(exc).__name__}: {message}"[:300]
