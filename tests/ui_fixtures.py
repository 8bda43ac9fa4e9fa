"""Fixtures for the UI tests: the real app, served on 127.0.0.1 over a temporary index.

Test modules import the fixtures they use from here (pytest finds them by name).
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from rag import Config, Engine

from .conftest import CORPUS, write_doc

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SETUP_HINT = "run `bash scripts/setup.sh --test` to install Chromium and the CJK font"
# Gradio's Dataframe code uses pandas options that pandas 3 deprecates: not ours to fix.
GRADIO_PANDAS_WARNINGS = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
                          pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]

SAND = ["一是莱芜区成立砂石资源整治工作专班,整改砂石问题,制定6项专项措施、5项长效机制。",
        "二是莱芜区设置7处联合检查点,严查运输无合法来源矿产品的车辆,整治砂石问题。"]
FLOOD = ["历城区将防汛应急指挥部调整设在应急管理部门,加强防汛工作。",
         "历城区新建防汛智慧监测点99处,实现防汛实时预警。"]
FARM = ["济阳区获批农业产业联合体4家,培育农业龙头企业12家。"]


@dataclass
class ServedApp:
    url: str
    engine: Engine
    uploads_dir: Path


def serve_app(engine: Engine, uploads_dir: Path, llm: str):
    """Build the app and serve it on loopback without blocking; returns (app, ServedApp)."""
    from ui.app import build_app, serve
    app = build_app(engine, uploads_dir, llm)
    url = serve(app, "127.0.0.1", port=None)
    return app, ServedApp(url, engine, uploads_dir)


@pytest.fixture(scope="module")
def extractive_app(tmp_path_factory):
    """The app with the extractive generator (no LLM: fast) over three small documents."""
    root = tmp_path_factory.mktemp("ui-extractive")
    corpus = root / "corpus"
    corpus.mkdir()
    write_doc(corpus, "laiwu-sand.txt", SAND, title="莱芜区砂石资源整治通报")
    write_doc(corpus, "licheng-flood.txt", FLOOD, title="历城区防汛整改通报")
    write_doc(corpus, "jiyang-farm.txt", FARM, title="济阳区农业发展通报")
    engine = Engine(Config(index=str(root / "index"), corpus=str(corpus), llm="extractive"))
    engine.index(progress=False)
    app, served = serve_app(engine, root / "uploads", "extractive")
    yield served
    app.close()


@pytest.fixture(scope="module")
def local_app(tmp_path_factory, sample_engine):
    """The app with the bundled local LLM over the sample corpus.

    The index is a copy of the session's sample index (built once, in conftest), so the
    documents this module uploads do not reach other tests.
    """
    root = tmp_path_factory.mktemp("ui-local")
    shutil.copytree(sample_engine.config.index, root / "index")
    engine = Engine(Config(index=str(root / "index"), corpus=str(CORPUS), llm="local"))
    app, served = serve_app(engine, root / "uploads", "local")
    yield served
    app.close()


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium, with a font that has Chinese glyphs; fails (not skips) without them."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing; {SETUP_HINT}")
    try:
        fonts = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True,
                               timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"cannot list the installed fonts ({exc}); {SETUP_HINT}")
    if "WenQuanYi" not in fonts:
        pytest.fail(f"the font fonts-wqy-microhei is missing (Chinese would render as boxes); {SETUP_HINT}")
    return CHROMIUM
