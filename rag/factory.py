"""Backends chosen by name, in one place: the CLI, the UI, the API server, ``rag eval`` and
``bench/`` all build their generator and embedder here.

    generator, notice = make_generator(config)            # the configured one (config.llm)
    generator, notice = make_generator(config, "extractive")
    embedder = make_embedder(config)

Generator names (``--llm`` / ``RAG_LLM``):

    local        Qwen2.5-Coder-1.5B-Instruct Q4_K_M, bundled, served in-process by xllamacpp
    gguf:<path>  a GGUF file you bring, served the same way
    openai       the OpenAI-compatible endpoint of the configuration (base_url, model,
                 OPENAI_API_KEY): an endpoint and its key come from the server's
                 configuration only, never from a request
    extractive   no LLM: the best retrieved sentences, quoted and cited

A server offers a fixed set of them (``Config.generators``), each under a model id
(``rag-local``, ``rag-extractive``, ``rag-openai``, ``rag-gguf-<file stem>``).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

from embeddings import Embedder, get_embedder

from .config import Config
from .generators import ChatGenerator, ExtractiveGenerator, Generator, GeneratorError
from .prompts import FALLBACK_NOTICE

MODEL_ID_PREFIX = "rag-"


def make_embedder(config: Config) -> Embedder:
    """The embedding backend the configuration names (loaded once per process)."""
    return get_embedder(config.embedding)


def _local_server_generator(name: str, model_path: Path, config: Config) -> ChatGenerator:
    from .local_llm import LocalLlamaServer
    try:
        server = LocalLlamaServer.shared(model_path, threads=config.llm_threads or None)
    except RuntimeError as exc:
        raise GeneratorError(f"the local LLM server did not start: {exc}") from None
    return ChatGenerator(name, server.base_url, "local", "local", config.request_timeout, config.llm_cache)


def make_generator(config: Config, name: str | None = None) -> tuple[Generator, str]:
    """The generator called ``name`` (default: ``config.llm``) and a notice for the user
    ('' when there is none); raises GeneratorError when it cannot be built."""
    spec = (config.llm if name is None else name).strip()
    if spec == "extractive":
        return ExtractiveGenerator(), ""
    if spec == "local":
        from .local_llm import INSTALL_COMMAND, ModelCorrupt, ModelNotInstalled, bundled_model_path
        try:
            path = bundled_model_path()
        except ModelNotInstalled:
            return ExtractiveGenerator(), FALLBACK_NOTICE.format(install=INSTALL_COMMAND)
        except ModelCorrupt as exc:
            raise GeneratorError(str(exc)) from None
        return _local_server_generator("local", path, config), ""
    if spec.startswith("gguf:"):
        from .local_llm import verify_gguf
        path = Path(spec.split(":", 1)[1]).expanduser()
        try:
            verify_gguf(path)
        except (OSError, ValueError) as exc:
            raise GeneratorError(str(exc)) from None
        return _local_server_generator(f"gguf:{path.name}", path, config), ""
    if spec == "openai":
        if not config.base_url:
            raise GeneratorError("--llm openai needs --base-url (e.g. http://127.0.0.1:8080/v1)")
        model = config.model or "default"
        return ChatGenerator(f"openai:{model}", config.base_url, model,
                             os.environ.get("OPENAI_API_KEY", "none"), config.request_timeout, config.llm_cache), ""
    raise GeneratorError(f"unknown --llm {spec!r}; use local, gguf:<path>, openai or extractive")


def served_generators(config: Config) -> list[str]:
    """The generator names a server offers: ``config.generators`` (comma-separated), or the
    configured one and ``extractive`` (fast, no LLM) when it is empty; the first is the
    default."""
    names = [n.strip() for n in config.generators.split(",") if n.strip()] or [config.llm, "extractive"]
    return list(dict.fromkeys(names))  # in order, each once


def model_id(name: str) -> str:
    """The API's model id for a generator name: rag-local, rag-gguf-<stem>, …"""
    if name.startswith("gguf:"):
        return f"{MODEL_ID_PREFIX}gguf-{Path(name.split(':', 1)[1]).stem}"
    return MODEL_ID_PREFIX + name


class GeneratorPool:
    """One generator per name, built on first use and then shared: the local one starts an
    in-process llama.cpp server, which must happen once per process, not per question."""

    def __init__(self, config: Config):
        self.config = config
        self._built: dict[str, tuple[Generator, str]] = {}
        self._lock = threading.Lock()

    def get(self, name: str | None = None) -> tuple[Generator, str]:
        """(generator, notice for the user); raises GeneratorError."""
        spec = self.config.llm if name is None else name
        with self._lock:
            if spec not in self._built:
                self._built[spec] = make_generator(self.config, spec)
            return self._built[spec]

    def register(self, name: str, generator: Generator, notice: str = "") -> None:
        """Offer a generator built elsewhere under ``name`` (tests use a scripted LLM)."""
        with self._lock:
            self._built[name] = (generator, notice)


STORES = ("files", "milvus")


def make_store(config: Config):
    """The index store the configuration names (``config.store``): ``files`` (FAISS +
    bm25s in ``config.index``) or ``milvus`` (``config.milvus_uri``: a ``.db`` path is
    milvus-lite, ``http://host:19530`` a server; the collection is named after the
    index folder). Raises ConfigError for another name."""
    from .config import ConfigError
    from .store import FileStore
    if config.store == "files":
        store = FileStore(config.index)
    elif config.store == "milvus":
        from .milvus_store import MilvusStore, collection_name
        store = MilvusStore(config.milvus_uri, collection_name(config.index))
    else:
        raise ConfigError(f"unknown store {config.store!r}; use {' or '.join(STORES)}")
    store.configure(config)  # its tunables (segments, HNSW) for reading as well as writing
    return store
