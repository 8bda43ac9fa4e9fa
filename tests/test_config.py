"""Configuration precedence: defaults < file < environment < flags."""
from __future__ import annotations

import pytest

from rag.config import Config, ConfigError


def test_precedence(tmp_path):
    f = tmp_path / "rag.toml"
    f.write_text('[rag]\nk = 7\nindex = "from-file"\ncorpus = "file-corpus"\n', encoding="utf-8")
    env = {"RAG_INDEX": "from-env", "RAG_K": "9"}
    c = Config.load(f, {"k": 3}, environ=env)
    assert (c.k, c.index, c.corpus, c.embedding) == (3, "from-env", "file-corpus", "e5-small-q4")


def test_env_types_are_checked():
    assert Config.load(None, environ={"RAG_CONTEXT_HEADER": "false"}).context_header is False
    with pytest.raises(ConfigError, match="RAG_K|k="):
        Config.load(None, environ={"RAG_K": "many"})


def test_unknown_key_and_bad_file(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("nonsense = 1\n")
    with pytest.raises(ConfigError, match="unknown configuration key"):
        Config.load(f, environ={})
    f.write_text("k = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Config.load(f, environ={})
