"""Fault injection: crashes at each step of the commit protocol, damage to each index file,
racing writers. After every case the committed documents are all searchable with the same
results, the next write succeeds, and nothing ends in a traceback or a silent change.

The index uses the `hash-test` embedder (no model to load), so real `rag index`
subprocesses start in seconds. A crash is injected with RAG_FAULT_POINT=<step>: the writer
stops there and the test kills it with SIGKILL. Damage is applied to a copy of a pristine
two-segment index; searches, repairs and writes after it run `rag` in-process
(``rag.cli.main``), so an uncaught exception fails the test as a traceback would.

Run alone: ``pytest -m faults -q``; the tally of cases is printed at the end.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag import cli
from rag.store import FAULT_POINTS

from .conftest import REPO, write_doc

pytestmark = pytest.mark.faults

DOCS = {  # folder, file, a phrase only it holds, its paragraphs
    "sand.txt": ("a", "砂石资源整治工作专班", ["一是成立砂石资源整治工作专班,制定6项专项措施。",
                                           "二是设置7处联合检查点,严查非法运输车辆。"]),
    "flood.txt": ("a", "防汛应急指挥部", ["将防汛应急指挥部调整设在应急管理部门。",
                                      "新建防汛智慧监测点99处,实现实时预警。"]),
    "farm.txt": ("a", "农业产业联合体", ["获批农业产业联合体4家,培育龙头企业12家。"]),
    "water.txt": ("b", "黑臭水体", ["完成黑臭水体整治23条,新建污水管网41公里。"]),
}
NEW = ("c", "new.txt", "光伏电站", ["新建光伏电站3座,年发电量1.2亿千瓦时。"])
QUERIES = [phrase for _, phrase, _ in DOCS.values()] + ["整改措施", "新建"]
TALLY = {"cases": 0, "data_lost": 0, "tracebacks": 0, "undetected": 0}


def _env(base: Path) -> dict[str, str]:
    return {"RAG_EMBEDDING": "hash-test", "RAG_INDEX": str(base / "index"),
            # A decoy corpus: anything built from it instead of the index's own documents shows.
            "RAG_CORPUS": str(base / "decoy"), "RAG_LOCK_TIMEOUT": "60"}


def _write_docs(base: Path) -> None:
    for name, (folder, _, paragraphs) in DOCS.items():
        (base / folder).mkdir(parents=True, exist_ok=True)
        write_doc(base / folder, name, paragraphs, title=f"{name}通报")
    (base / NEW[0]).mkdir(parents=True, exist_ok=True)
    write_doc(base / NEW[0], NEW[1], NEW[3], title="新能源通报")
    (base / "decoy").mkdir(exist_ok=True)
    write_doc(base / "decoy", "decoy.txt", ["诱饵文件不应出现在索引中。"])


def run_rag(monkeypatch, capsys, env: dict, *argv: str) -> tuple[int, str, str]:
    """`rag ARGV` in this process: (exit code, stdout, stderr)."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def results(monkeypatch, capsys, env) -> dict:
    """Every query's ranking (document, paragraph, score) and the document list."""
    found = {}
    for q in QUERIES + [NEW[2]]:
        code, out, err = run_rag(monkeypatch, capsys, env, "search", q, "--json", "--k", "5")
        assert code == 0, err
        found[q] = [(h["doc_id"], h["paragraph"], round(h["score"], 5)) for h in json.loads(out)]
    code, out, err = run_rag(monkeypatch, capsys, env, "documents", "--json")
    assert code == 0, err
    found["documents"] = sorted(d["doc_id"] for d in json.loads(out))
    return found


def all_searchable(state: dict, with_new: bool) -> bool:
    names = list(DOCS) + ([NEW[1]] if with_new else [])
    phrases = {name: DOCS[name][1] if name in DOCS else NEW[2] for name in names}
    return all(state[p] and state[p][0][0] == name for name, p in phrases.items()) \
        and state["documents"] == sorted(names)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A two-segment index of DOCS (a/ first, then b/), its results before and after
    adding NEW, all built without faults."""
    base = tmp_path_factory.mktemp("pristine")
    _write_docs(base)
    env = _env(base)
    mp = pytest.MonkeyPatch()
    try:
        for key, value in env.items():
            mp.setenv(key, value)
        assert cli.main(["index", str(base / "a")]) == 0
        assert cli.main(["index", str(base / "b")]) == 0
    finally:
        mp.undo()
    return base


@pytest.fixture
def case(pristine, tmp_path):
    """A fresh copy of the pristine index and documents (the copy keeps its absolute
    paths pointing at the pristine documents, which no case changes)."""
    shutil.copytree(pristine / "index", tmp_path / "index")
    shutil.copytree(pristine / "decoy", tmp_path / "decoy")
    return tmp_path


@pytest.fixture(scope="module")
def expected(pristine, tmp_path_factory):
    """The results of the pristine index, and after adding NEW to a copy of it."""
    mp = pytest.MonkeyPatch()  # capsys and monkeypatch are per test; by hand here

    def run(env, *argv):
        out, err = io.StringIO(), io.StringIO()
        for key, value in env.items():
            mp.setenv(key, value)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(list(argv))
        return code, out.getvalue(), err.getvalue()

    def state(env):
        found = {}
        for q in QUERIES + [NEW[2]]:
            code, out, err = run(env, "search", q, "--json", "--k", "5")
            assert code == 0, err
            found[q] = [(h["doc_id"], h["paragraph"], round(h["score"], 5)) for h in json.loads(out)]
        code, out, _ = run(env, "documents", "--json")
        found["documents"] = sorted(d["doc_id"] for d in json.loads(out))
        return found
    try:
        before = state(_env(pristine))
        copy = tmp_path_factory.mktemp("after-new")
        shutil.copytree(pristine / "index", copy / "index")
        shutil.copytree(pristine / "decoy", copy / "decoy")
        assert run(_env(copy), "index", str(pristine / NEW[0]))[0] == 0
        after = state(_env(copy))
    finally:
        mp.undo()
    assert all_searchable(before, with_new=False) and all_searchable(after, with_new=True)
    return {"before": before, "after": after}


def next_write_succeeds(monkeypatch, capsys, env, pristine, expected) -> None:
    code, out, err = run_rag(monkeypatch, capsys, env, "index", str(pristine / NEW[0]))
    assert code == 0, err
    assert results(monkeypatch, capsys, env) == expected["after"]


# -- a writer killed at each step of the commit protocol -----------------------------------
def _subprocess_env(env: dict, **extra) -> dict:
    full = dict(os.environ, **env, **extra)
    full["PYTHONPATH"] = str(REPO) + os.pathsep + full.get("PYTHONPATH", "")
    return full


def _start_writer(env: dict, folder: Path, fault: str | None = None) -> subprocess.Popen:
    extra = {"RAG_FAULT_POINT": fault} if fault else {}
    return subprocess.Popen([sys.executable, "-m", "rag.cli", "index", str(folder)], cwd=REPO,
                            env=_subprocess_env(env, **extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_fault(proc: subprocess.Popen, fault: str, timeout: float = 120) -> str:
    """The writer's stderr up to the fault point's marker line."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if f"RAG_FAULT_POINT {fault} reached" in line:
            return "".join(seen)
    proc.kill()
    raise AssertionError(f"the writer never reached {fault}: {''.join(seen)}")


@pytest.mark.parametrize("fault", FAULT_POINTS)
def test_writer_killed_at_each_step(fault, case, pristine, expected, monkeypatch, capsys, caplog):
    TALLY["cases"] += 1
    env = _env(case)
    proc = _start_writer(env, pristine / NEW[0], fault)
    _wait_for_fault(proc, fault)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    committed = FAULT_POINTS.index(fault) >= FAULT_POINTS.index("current-swapped")
    state = results(monkeypatch, capsys, env)
    if state != expected["after" if committed else "before"]:
        TALLY["undetected"] += 1
        TALLY["data_lost"] += not all_searchable(state, with_new=committed)
        pytest.fail(f"after a kill at {fault} the index reads differently: {state}")
    code, out, err = run_rag(monkeypatch, capsys, env, "index", str(pristine / NEW[0]))
    assert code == 0, err
    if fault in ("segment-partial", "segment-written", "segment-renamed", "generation-written",
                 "current-written"):
        assert "left by an interrupted index write" in caplog.text or "never became current" in caplog.text
    leftovers = [p.name for p in (case / "index").rglob("*") if p.name.startswith(("tmp-", "CURRENT.tmp"))]
    assert not leftovers
    assert results(monkeypatch, capsys, env) == expected["after"]


# -- damage to each file of the index ------------------------------------------------------
def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[:len(data) // 2])
    elif how == "garble":  # same size, different bytes in the middle
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes(b ^ 0x5A for b in data[middle:middle + 16]) + data[middle + 16:])
    elif how == "delete":
        path.unlink()
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "append":  # junk after the end, as a second writer's stray bytes would be
        path.write_bytes(data + b"\x00junk\n{}")


def _index_files(index: Path) -> list[str]:
    return sorted(str(p.relative_to(index)) for p in index.rglob("*") if p.is_file() and p.name != ".lock")


def _pristine_files():
    """The file list of a pristine index has a fixed shape; named by role so test ids are stable."""
    return (["CURRENT"] + [f"{g}/{m}" for g in ("current", "previous") for m in ("manifest.json", "manifest.copy.json")]
            + [f"{s}/{f}" for s in ("segment-a", "segment-b")
               for f in ("chunks.jsonl", "paragraphs.jsonl", "postings.npz", "terms.json", "vectors.npy")])


def _resolve_role(index: Path, role: str) -> Path:
    if role == "CURRENT":
        return index / "CURRENT"
    where, name = role.split("/")
    current = (index / "CURRENT").read_text().strip()
    if where in ("current", "previous"):
        gens = sorted(p.name for p in index.glob("gen-*"))
        return index / (current if where == "current" else [g for g in gens if g != current][-1]) / name
    record = json.loads((index / current / "manifest.json").read_text())
    seg_a = next(iter(json.loads((index / sorted(index.glob("gen-*"))[0].name / "manifest.json").read_text())
                      ["segments"]))
    seg = seg_a if where == "segment-a" else next(s for s in record["segments"] if s != seg_a)
    return index / "segments" / seg / name


@pytest.mark.parametrize("how", ["truncate", "garble", "delete", "empty", "append"])
@pytest.mark.parametrize("role", _pristine_files())
def test_damaged_file(role, how, case, pristine, expected, monkeypatch, capsys):
    TALLY["cases"] += 1
    env = _env(case)
    index = case / "index"
    assert len(_index_files(index)) == len(_pristine_files())
    target = _resolve_role(index, role)
    _damage(target, how)
    before_files = {p: p.stat().st_mtime_ns for p in index.rglob("*") if p.is_file() and p.name != ".lock"}
    state, error = {}, ""
    try:
        state = results(monkeypatch, capsys, env)
    except AssertionError as exc:  # a search refused: it must name the file and the fix
        error = str(exc)
    except Exception:
        TALLY["tracebacks"] += 1
        raise
    # A search never writes the index, whatever the damage.
    assert {p: p.stat().st_mtime_ns for p in index.rglob("*") if p.is_file() and p.name != ".lock"} == before_files
    if error:
        if target.name not in error or "rag index --repair" not in error:
            TALLY["undetected"] += 1
            pytest.fail(f"unclear error for {how} {role}: {error}")
        code, out, err = run_rag(monkeypatch, capsys, env, "index", "--repair")
        assert code == 0, err
        assert "decoy" not in out + err
        state = results(monkeypatch, capsys, env)
    if state != expected["before"]:
        TALLY["undetected"] += 1
        TALLY["data_lost"] += not all_searchable(state, with_new=False)
        changed = {q: (state.get(q), r) for q, r in expected["before"].items() if state.get(q) != r}
        pytest.fail(f"{how} {role}: the index reads differently without saying so: {changed}")
    next_write_succeeds(monkeypatch, capsys, env, pristine, expected)


# -- two writers at once -------------------------------------------------------------------
def test_two_writers_with_same_named_files(tmp_path, monkeypatch, capsys):
    TALLY["cases"] += 1
    for folder, text in (("x", "甲地新建充电桩120个。"), ("y", "乙地改造老旧小区35个。")):
        (tmp_path / folder).mkdir()
        write_doc(tmp_path / folder, "report.txt", [text], title=f"{folder}报告")
    (tmp_path / "decoy").mkdir()
    env = _env(tmp_path)
    writers = [_start_writer(env, tmp_path / f) for f in ("x", "y")]
    outcomes = [w.communicate(timeout=180) for w in writers]
    assert [w.returncode for w in writers] == [0, 0], outcomes
    assert all("1 added" in out for out, _ in outcomes)
    assert not any("Traceback" in err for _, err in outcomes)
    code, out, err = run_rag(monkeypatch, capsys, env, "documents", "--json")
    docs = json.loads(out)
    assert len(docs) == 2 and {Path(d["path"]).parent.name for d in docs} == {"x", "y"}
    for phrase, folder in (("充电桩", "x"), ("老旧小区", "y")):
        code, out, err = run_rag(monkeypatch, capsys, env, "search", phrase, "--json", "--k", "1")
        hit = json.loads(out)[0]
        assert Path(next(d["path"] for d in docs if d["doc_id"] == hit["doc_id"])).parent.name == folder


def test_a_busy_index_names_the_writer_and_readers_do_not_wait(case, pristine, expected, monkeypatch, capsys):
    TALLY["cases"] += 1
    env = _env(case)
    holder = _start_writer(env, pristine / NEW[0], "lock-acquired")
    try:
        _wait_for_fault(holder, "lock-acquired")
        started = time.monotonic()
        assert results(monkeypatch, capsys, env) == expected["before"]  # readers never block
        code, out, err = run_rag(monkeypatch, capsys, dict(env, RAG_LOCK_TIMEOUT="1"),
                                 "index", str(pristine / NEW[0]))
        assert code == 1 and f"pid {holder.pid}" in err and "Traceback" not in err
        assert time.monotonic() - started < 30
    finally:
        holder.kill()
        holder.wait(timeout=30)
    next_write_succeeds(monkeypatch, capsys, env, pristine, expected)


def test_zz_tally():
    """The counts the issue asks for (printed with -s; asserted always)."""
    line = ", ".join(f"{k}={v}" for k, v in TALLY.items())
    print(f"\nfault-injection tally: {line}")
    assert TALLY["data_lost"] == TALLY["tracebacks"] == TALLY["undetected"] == 0
