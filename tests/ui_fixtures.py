"""Fixtures for the UI tests: the real server (API and UI at /ui), on 127.0.0.1 over a
temporary index.

Test modules import the fixtures they use from here (pytest finds them by name).
"""
from __future__ import annotations

import shutil
import socket
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
    url: str  # the UI's address (…/ui/)
    engine: Engine
    uploads_dir: Path
    server_url: str = ""  # the API's root (http://127.0.0.1:port)


def unused_port() -> int:
    """A port nothing listens on (the OS just handed it out)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_app(engine: Engine, uploads_dir: Path, generators: list[str]):
    """The server (API and UI) on a free loopback port, in a thread; returns (thread, ServedApp)."""
    from rag.server import ServerThread, create_app
    thread = ServerThread(create_app(engine, uploads_dir, generators)).start()
    return thread, ServedApp(thread.url + "/ui/", engine, uploads_dir, thread.url)


@pytest.fixture(scope="module")
def extractive_app(tmp_path_factory):
    """The app with the extractive generator (no LLM: fast) over three small documents; it
    also offers an OpenAI endpoint, configured on the server, where nothing listens."""
    root = tmp_path_factory.mktemp("ui-extractive")
    corpus = root / "corpus"
    corpus.mkdir()
    write_doc(corpus, "laiwu-sand.txt", SAND, title="莱芜区砂石资源整治通报")
    write_doc(corpus, "licheng-flood.txt", FLOOD, title="历城区防汛整改通报")
    write_doc(corpus, "jiyang-farm.txt", FARM, title="济阳区农业发展通报")
    engine = Engine(Config(index=str(root / "index"), corpus=str(corpus), llm="extractive",
                           base_url=f"http://127.0.0.1:{unused_port()}/v1", model="any"))
    engine.index(progress=False)
    server, served = serve_app(engine, root / "uploads", ["extractive", "openai"])
    yield served
    server.stop()


@pytest.fixture(scope="module")
def local_app(tmp_path_factory, sample_engine):
    """The app with the bundled local LLM over the sample corpus.

    The index is a copy of the session's sample index (built once, in conftest), so the
    documents this module uploads do not reach other tests.
    """
    root = tmp_path_factory.mktemp("ui-local")
    shutil.copytree(sample_engine.config.index, root / "index")
    engine = Engine(Config(index=str(root / "index"), corpus=str(CORPUS), llm="local"))
    server, served = serve_app(engine, root / "uploads", ["local", "extractive"])
    yield served
    server.stop()


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
