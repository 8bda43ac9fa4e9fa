"""Embedding in N processes and on Ray (local mode): same vectors as in-process, and a
re-run resumes from the journal instead of embedding everything again."""
from __future__ import annotations

import numpy as np
import pytest

from embeddings import get_embedder
from rag import Config
from rag.embed_workers import Journal, embed_missing, journal_folder

TEXTS = {f"key{i}": text for i, text in enumerate([
    "砂石整治通报 > 一是成立砂石资源整治工作专班,制定6项专项措施。",
    "砂石整治通报 > 二是设置7处联合检查点,严查非法运输车辆。",
    "防汛整改通报 > 将防汛应急指挥部调整设在应急管理部门。",
    "防汛整改通报 > 新建防汛智慧监测点99处,实现实时预警。",
    "农业整改通报 > 获批农业产业联合体4家,培育龙头企业12家。",
    "农业整改通报 > 建成高标准农田5万亩。",
])}


@pytest.fixture(scope="module")
def embedder():
    return get_embedder("e5-small-q4")


@pytest.fixture(scope="module")
def expected(embedder):
    return dict(zip(TEXTS, embedder.encode(list(TEXTS.values()))))


def _same(got: dict, expected: dict) -> bool:
    # Other processes run the model with other thread counts: sums in another order.
    return got.keys() == expected.keys() and all(float(np.dot(got[k], expected[k])) > 0.9999 for k in got)


def test_in_process_needs_no_journal(tmp_path, embedder, expected):
    config = Config(index=str(tmp_path / "index"))
    vectors, run = embed_missing(TEXTS, embedder, config, progress=False)
    assert _same(vectors, expected) and run.embedded == 6 and run.resumed == 0
    assert not journal_folder(config.index).exists()


def test_worker_processes_give_the_same_vectors_and_resume(tmp_path, embedder, expected):
    config = Config(index=str(tmp_path / "index"), workers=2)
    journal = Journal(journal_folder(config.index))
    # A run that died after two batches: their vectors are in the journal.
    journal.append(["key0", "key1"], np.stack([expected["key0"], expected["key1"]]))
    journal.append(["old"], np.zeros((1, embedder.dim), dtype=np.float32))  # a finished job's
    (journal.folder / "torn.npz").write_bytes(b"PK\x03\x04 half a file")  # killed mid-write
    vectors, run = embed_missing(TEXTS, embedder, config, progress=False)
    assert _same(vectors, expected)
    assert run.resumed == 2 and run.embedded == 4  # only what was missing
    assert not (journal.folder / "torn.npz").exists()
    again, run = embed_missing(TEXTS, embedder, config, progress=False)
    assert run.resumed == 6 and run.embedded == 0 and _same(again, expected)
    assert "old" not in journal.load({"old"})  # shards nobody needed were dropped


def test_ray_local_mode(tmp_path, embedder, expected):
    pytest.importorskip("ray", reason="--ray needs the [scale] extra")
    config = Config(index=str(tmp_path / "index"), workers=1, ray_address="local")
    vectors, run = embed_missing(TEXTS, embedder, config, progress=False)
    assert _same(vectors, expected) and run.embedded == 6
    assert set(Journal(journal_folder(config.index)).load(set(TEXTS))) == set(TEXTS)


def test_cli_index_with_workers_into_milvus(tmp_path):
    import json
    import subprocess
    import sys

    from .conftest import REPO, write_doc
    pytest.importorskip("milvus_lite", reason="the Milvus store needs the [scale] extra")
    folder = tmp_path / "docs"
    folder.mkdir()
    write_doc(folder, "sand.txt", list(TEXTS.values())[:2], title="砂石整治通报")
    write_doc(folder, "flood.txt", list(TEXTS.values())[2:4], title="防汛整改通报")
    store = ["--store", "milvus", "--milvus-uri", str(tmp_path / "m.db"), "--index", str(tmp_path / "index")]
    rag = lambda *a: subprocess.run([sys.executable, "-m", "rag.cli", *a], capture_output=True,  # noqa: E731
                                    text=True, cwd=REPO, timeout=600)
    out = rag("index", str(folder), "--workers", "2", *store)
    assert out.returncode == 0, out.stderr
    assert "2 added" in out.stdout
    out = rag("search", "砂石资源整治工作专班", "--json", *store)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["doc_id"] == "sand.txt"
    out = rag("index", str(folder), "--workers", "0", "--rebuild", *store)
    assert out.returncode == 2 and "at least 1 worker" in out.stderr
