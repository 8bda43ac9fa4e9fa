"""The UI's handlers through gradio_client, against the app served on 127.0.0.1 with the
extractive generator (no LLM, fast) over a small temporary index."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from ui.render import highlight
from ui.uploads import add_upload, safe_filename

from .conftest import write_doc
from .ui_fixtures import GRADIO_PANDAS_WARNINGS, extractive_app  # noqa: F401  (a fixture)

pytestmark = GRADIO_PANDAS_WARNINGS

WAIT_S = 180  # bound on any one call; answers here take well under a second


def ask(client: Client, question: str, **options) -> tuple[list[dict], dict | None]:
    """(chat messages, the answer as data) after asking in the client's conversation."""
    job = client.submit(question, api_name="/ask", **options)
    _, messages, details = job.result(timeout=WAIT_S)
    return messages, details


def upload(client: Client, path: str | Path) -> tuple[str, list[list]]:
    status, table, _ = client.submit([handle_file(str(path))], api_name="/upload").result(timeout=WAIT_S)
    return status, table["data"]


def reply_html(messages: list[dict]) -> str:
    return messages[-1]["content"][0]["text"]


def free_port() -> int:
    """A port nothing listens on (the OS just handed it out)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_question_gets_a_cited_answer_with_source_cards(extractive_app):
    messages, details = ask(Client(extractive_app.url, verbose=False), "莱芜区如何整改砂石问题")
    assert not details["refused"]
    assert details["citations"] and details["citations"][0]["doc_id"] == "laiwu-sand.txt"
    assert "[1]" in details["answer"]
    html = reply_html(messages)
    # [1] links to the card of source 1 of turn 1; the card shows where the paragraph
    # comes from and highlights the sentences the answer uses.
    assert 'href="#src-1-1"' in html and 'id="src-1-1"' in html
    assert "《莱芜区砂石资源整治通报》" in html and "2024-01-02" in html and "第1段" in html
    assert "<mark>" in html and "复制回答" in html


def test_answer_streams_a_draft_then_the_checked_answer(extractive_app):
    job = Client(extractive_app.url, verbose=False).submit("莱芜区如何整改砂石问题", api_name="/ask")
    final = job.result(timeout=WAIT_S)
    drafts = [out for out in job.outputs()[:-1] if "rag-draft" in reply_html(out[1])]
    assert len(drafts) >= 2  # the empty draft, then the draft growing token by token
    assert "rag-draft" not in reply_html(final[1]) and "rag-cite" in reply_html(final[1])


def test_the_retrieved_paragraphs_are_shown_before_the_first_token(extractive_app):
    job = Client(extractive_app.url, verbose=False).submit("莱芜区如何整改砂石问题", api_name="/ask")
    job.result(timeout=WAIT_S)
    drafts = [reply_html(out[1]) for out in job.outputs()[:-1] if "rag-draft" in reply_html(out[1])]
    first_sources = next(i for i, html in enumerate(drafts) if "rag-evidence" in html)
    # the draft that first shows the sources has no answer text yet
    assert 'class="rag-text"></div>' in drafts[first_sources] and "rag-card" in drafts[first_sources]
    assert any("rag-evidence" in html and 'class="rag-text"></div>' not in html for html in drafts[first_sources:])


def test_concurrent_conversations_keep_their_own_history(extractive_app):
    both_asked = threading.Barrier(2, timeout=WAIT_S)
    results: dict[str, tuple] = {}

    def converse(name: str, first: str, follow_up: str) -> None:
        client = Client(extractive_app.url, verbose=False)
        ask(client, first)
        both_asked.wait()  # each follow-up comes after both first questions
        results[name] = ask(client, follow_up)

    threads = [threading.Thread(target=converse, args=("A", "莱芜区如何整改砂石问题", "济南市呢？")),
               threading.Thread(target=converse, args=("B", "历城区如何加强防汛工作", "济南市呢？"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=2 * WAIT_S)
    a_messages, a = results["A"]
    b_messages, b = results["B"]
    # The same follow-up is read with each conversation's own earlier question.
    assert "砂石" in a["standalone_question"] and "防汛" not in a["standalone_question"]
    assert "防汛" in b["standalone_question"] and "砂石" not in b["standalone_question"]
    assert "按问题理解" in reply_html(a_messages)
    assert len(a_messages) == len(b_messages) == 4  # two turns each, nothing of the other


def test_empty_message_is_ignored(extractive_app):
    client = Client(extractive_app.url, verbose=False)
    assert ask(client, "   ") == ([], None)
    messages, _ = ask(client, "莱芜区如何整改砂石问题")
    again, details = ask(client, "")
    assert again == messages and details is None


def test_new_conversation_forgets_the_history(extractive_app):
    client = Client(extractive_app.url, verbose=False)
    ask(client, "莱芜区如何整改砂石问题")
    assert client.predict(api_name="/new_conversation") == ([], None)
    messages, details = ask(client, "历城区如何加强防汛工作")
    assert len(messages) == 2 and details["standalone_question"] == "历城区如何加强防汛工作"


def test_uploaded_document_is_indexed_and_cited(extractive_app, tmp_path):
    client = Client(extractive_app.url, verbose=False)
    doc = write_doc(tmp_path, "青石镇通报.txt", ["青石镇2024年新建口袋公园18处,由镇园林站统一管护口袋公园。"],
                    title="青石镇口袋公园建设通报")
    status, rows = upload(client, doc)
    assert "已加入 青石镇通报.txt" in status and "《青石镇口袋公园建设通报》" in status
    assert (extractive_app.uploads_dir / "青石镇通报.txt").read_bytes() == doc.read_bytes()
    assert ["青石镇口袋公园建设通报", "2024-01-02", 1, "青石镇通报.txt"] in rows
    assert rows == client.predict(api_name="/documents")["data"]

    _, details = ask(client, "青石镇新建了多少处口袋公园？")
    assert details["citations"][0]["doc_id"] == "青石镇通报.txt" and "18" in details["answer"]
    _, details = ask(client, "青石镇新建了多少处口袋公园？", scope=["laiwu-sand.txt"])
    assert all(c["doc_id"] == "laiwu-sand.txt" for c in details["citations"] + details["retrieved"])


def test_upload_does_not_break_questions_in_flight(extractive_app, tmp_path):
    doc = write_doc(tmp_path, "港口通报.txt", ["日照港新建集装箱泊位3个,扩大港口吞吐能力。"], title="日照港建设通报")
    uploaded = threading.Event()
    answers: list[dict] = []

    def keep_asking() -> None:
        client = Client(extractive_app.url, verbose=False)
        while not uploaded.is_set() or not answers:
            answers.append(ask(client, "莱芜区如何整改砂石问题")[1])
            client.predict(api_name="/new_conversation")

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        status, _ = upload(Client(extractive_app.url, verbose=False), doc)
    finally:
        uploaded.set()
        asker.join(timeout=2 * WAIT_S)
    assert "已加入" in status
    assert answers and all("error" not in a and a["citations"] for a in answers)


def test_removing_documents(extractive_app, tmp_path):
    client = Client(extractive_app.url, verbose=False)
    corpus_file = Path(extractive_app.engine.config.corpus) / "jiyang-farm.txt"
    status, table = client.submit(["jiyang-farm.txt"], api_name="/remove").result(timeout=WAIT_S)
    assert "已删除：《济阳区农业发展通报》" in status
    assert "jiyang-farm.txt" not in [row[3] for row in table["data"]]
    assert "jiyang-farm.txt" not in extractive_app.engine.store.manifest().documents
    assert corpus_file.is_file()  # only uploads are deleted from disk

    doc = write_doc(tmp_path, "临时通报.txt", ["钢城区新建污水处理厂2座,处理污水。"], title="钢城区污水处理通报")
    upload(client, doc)
    assert (extractive_app.uploads_dir / "临时通报.txt").is_file()
    status, _ = client.submit(["临时通报.txt"], api_name="/remove").result(timeout=WAIT_S)
    assert "已删除" in status and not (extractive_app.uploads_dir / "临时通报.txt").exists()

    status, _ = client.submit([], api_name="/remove").result(timeout=WAIT_S)
    assert status == "请先选择要删除的文档"
    status, _ = client.submit(["no-such-doc.txt"], api_name="/remove").result(timeout=WAIT_S)
    assert status.startswith("未删除") and "no-such-doc.txt" in status


def test_unreadable_upload_is_reported_and_the_index_stays_intact(extractive_app, tmp_path):
    client = Client(extractive_app.url, verbose=False)
    current = Path(extractive_app.engine.config.index) / "CURRENT"
    generation, documents = current.read_text(), client.predict(api_name="/documents")["data"]
    broken = tmp_path / "损坏.pdf"
    broken.write_bytes(b"%PDF-1.4\nthis is not a PDF body")

    status, rows = upload(client, broken)
    assert status.startswith("未加入 损坏.pdf：无法读取")
    assert current.read_text() == generation and rows == documents
    assert not any(p.name == "损坏.pdf" or p.name.startswith(".upload-")
                   for p in extractive_app.uploads_dir.iterdir())
    assert ask(client, "莱芜区如何整改砂石问题")[1]["citations"]


def test_file_name_with_parent_folders_is_sanitised(extractive_app, tmp_path):
    # Sent as a raw multipart upload, so the name reaches the server as typed.
    response = httpx.post(extractive_app.url + "gradio_api/upload", timeout=WAIT_S, files=[
        ("files", ("../../逃逸通报.txt", "逃逸通报\n发布日期:2024-01-02\n南山区新建公园3处,方便群众。\n".encode(),
                   "text/plain"))])
    response.raise_for_status()
    server_path = response.json()[0]
    client = Client(extractive_app.url, verbose=False)
    status, _, _ = client.submit([handle_file(server_path)], api_name="/upload").result(timeout=WAIT_S)
    assert "已加入 逃逸通报.txt" in status
    uploads = extractive_app.uploads_dir
    assert (uploads / "逃逸通报.txt").is_file()
    assert not (uploads.parent / "逃逸通报.txt").exists() and not (uploads.parent.parent / "逃逸通报.txt").exists()

    # Our own sanitising, without Gradio's in front: a Linux file name may hold backslashes.
    sneaky = tmp_path / "..\\..\\南山通报.txt"
    sneaky.write_text("南山通报\n南山区新建公园3处,方便群众。\n", encoding="utf-8")
    assert add_upload(extractive_app.engine, sneaky, uploads).startswith("已加入 南山通报.txt")
    assert (uploads / "南山通报.txt").is_file()


@pytest.mark.parametrize("name, safe", [
    ("../../etc/passwd.txt", "passwd.txt"),
    ("..\\..\\政策.md", "政策.md"),
    ("C:\\Users\\x\\报告.DOCX", "报告.docx"),
    ("a\x00b\x1f\u202ec.txt", "abc.txt"),  # control and bidi-override characters
    (".hidden.pdf", "hidden.pdf"),
    ("关于  整改的 通知 (2024).html", "关于 整改的 通知 (2024).html"),
    ('what?<>|*".txt', "what.txt"),
])
def test_safe_filename(name, safe):
    assert safe_filename(name) == safe


def test_upload_limits(extractive_app, tmp_path):
    big = tmp_path / "大文件.txt"
    big.write_bytes(b"x" * (1024 * 1024 + 1))
    assert add_upload(extractive_app.engine, big, extractive_app.uploads_dir, max_bytes=1024 * 1024) == \
        "未加入 大文件.txt：文件超过 1 MB"
    program = tmp_path / "tool.exe"
    program.write_bytes(b"MZ")
    assert "只支持" in add_upload(extractive_app.engine, program, extractive_app.uploads_dir)
    assert not (extractive_app.uploads_dir / "大文件.txt").exists()
    assert not (extractive_app.uploads_dir / "tool.exe").exists()


def test_document_text_is_escaped(extractive_app, tmp_path):
    client = Client(extractive_app.url, verbose=False)
    doc = write_doc(tmp_path, "xss.txt", ["青岛港<script>alert(1)</script>新建泊位3个,扩大青岛港吞吐能力。"],
                    title='港口"&<通报')  # a title line with ">" would be read as a breadcrumb
    upload(client, doc)
    messages, details = ask(client, "青岛港新建泊位多少个？")
    assert details["citations"][0]["doc_id"] == "xss.txt"
    html = reply_html(messages)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "《港口&quot;&amp;&lt;通报》" in html


def test_highlight_escapes_and_marks_the_supporting_sentences():
    assert highlight("甲。乙<丙>。丁。", ["乙<丙>。", "丁。"]) == "甲。<mark>乙&lt;丙&gt;。</mark><mark>丁。</mark>"


def test_unreachable_endpoint_is_a_message_in_the_chat(extractive_app):
    # The server was started with an OpenAI endpoint where nothing listens.
    endpoint = extractive_app.engine.config.base_url
    client = Client(extractive_app.url, verbose=False)
    messages, details = ask(client, "莱芜区如何整改砂石问题", llm="openai")
    assert details["error"].startswith("生成模型不可用") and endpoint in details["error"]
    html = reply_html(messages)
    assert "无法回答" in html and "Traceback" not in html
    _, details = ask(client, "莱芜区如何整改砂石问题")  # the conversation goes on
    assert details["citations"]


def test_a_request_cannot_choose_an_endpoint_or_another_generator(extractive_app):
    client = Client(extractive_app.url, verbose=False)
    # The page has no endpoint fields any more: the answer handler takes none.
    with pytest.raises(TypeError):
        client.submit("莱芜区如何整改砂石问题", api_name="/ask", base_url="http://127.0.0.1:9/v1")
    # Only the generators the server was started with; top-k within the slider's range.
    # (Gradio refuses a choice that is not offered before our handler, which checks too.)
    with pytest.raises(AppError, match="not in the list of choices"):
        ask(client, "莱芜区如何整改砂石问题", llm="gguf:/tmp/evil.gguf")
    try:
        _, details = ask(client, "莱芜区如何整改砂石问题", top_k=500)
        assert details["error"].startswith("无法检索这个问题") and "1 到 10" in details["error"]
    except AppError as exc:
        assert "500" in str(exc)
    # A raw call with an extra (endpoint) input is refused before any handler runs: nothing
    # ever connects to the endpoint it names.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        response = httpx.post(extractive_app.url + "gradio_api/call/ask", timeout=WAIT_S, json={
            "data": ["莱芜区如何整改砂石问题", [], "openai", endpoint, "any", 5, []]})
        if response.status_code == 200:  # the error comes in the event stream
            event_id = response.json()["event_id"]
            events = httpx.get(extractive_app.url + f"gradio_api/call/ask/{event_id}", timeout=WAIT_S).text
            assert "event: error" in events
        else:
            assert response.status_code in (400, 422)
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_uploaded_file_is_not_left_in_gradios_cache(extractive_app, tmp_path):
    from ui.uploads import gradio_cache
    client = Client(extractive_app.url, verbose=False)
    doc = write_doc(tmp_path, "缓存通报.txt", ["槐荫区新建口袋公园5处,方便群众。"], title="槐荫区口袋公园通报")
    # Uploaded as the page does: first into Gradio's cache, then handed to the handler.
    response = httpx.post(extractive_app.url + "gradio_api/upload", timeout=WAIT_S,
                          files=[("files", ("缓存通报.txt", doc.read_bytes(), "text/plain"))])
    cached = response.json()[0]
    assert Path(cached).is_file() and gradio_cache() in Path(cached).resolve().parents
    status, _, _ = client.submit([handle_file(cached)], api_name="/upload").result(timeout=WAIT_S)
    assert "已加入 缓存通报.txt" in status
    assert not Path(cached).exists()
    assert httpx.get(extractive_app.url + f"gradio_api/file={cached}", timeout=WAIT_S).status_code >= 400
    assert not list(gradio_cache().glob("*/缓存通报.txt"))
    # Removing it deletes the saved upload too, and any cached copy (from before a restart).
    stale = gradio_cache() / "0123456789abcdef-stale" / "缓存通报.txt"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(doc.read_bytes())
    status, _ = client.submit(["缓存通报.txt"], api_name="/remove").result(timeout=WAIT_S)
    assert "已删除" in status
    assert not (extractive_app.uploads_dir / "缓存通报.txt").exists() and not stale.exists()


def test_rag_ui_command_serves_on_loopback_until_interrupted(extractive_app):
    config, port = extractive_app.engine.config, free_port()
    server = subprocess.Popen([sys.executable, "-m", "rag.cli", "ui", "--index", config.index,
                               "--corpus", config.corpus, "--llm", "extractive", "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/ui/"  # `rag ui` is `rag serve` on port 7860: the UI is at /ui
    try:
        deadline = time.monotonic() + WAIT_S
        while server.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        _, _, details = Client(url, verbose=False).predict("莱芜区如何整改砂石问题", api_name="/ask")
        assert details.get("citations"), details
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl-C
        output, _ = server.communicate(timeout=WAIT_S)
    assert server.returncode == 0, output
    assert f"政策文件问答：{url}" in output and "Traceback" not in output


def test_rag_ui_refuses_an_open_address_without_a_key(extractive_app):
    config = extractive_app.engine.config
    for command in ("ui", "serve"):
        done = subprocess.run([sys.executable, "-m", "rag.cli", command, "--host", "0.0.0.0",
                               "--index", config.index, "--corpus", config.corpus, "--llm", "extractive",
                               "--port", str(free_port())], capture_output=True, text=True, timeout=WAIT_S,
                              env={**os.environ, "RAG_API_KEY": ""})
        assert done.returncode == 2 and "refusing to serve on 0.0.0.0 without an access key" in done.stderr
        assert "--api-key" in done.stderr and "Traceback" not in done.stderr


def test_ui_asks_for_the_key_when_the_server_has_one(tmp_path, extractive_app):
    from rag.server import ServerThread, UI_USER, create_app
    from rag import Engine
    engine = Engine(extractive_app.engine.config.replace(api_key="s3cret-key-for-tests"))
    thread = ServerThread(create_app(engine, tmp_path / "uploads", ["extractive"])).start()
    try:
        url = thread.url + "/ui/"
        assert httpx.get(url + "config", timeout=WAIT_S).status_code == 401
        upload = httpx.post(url + "gradio_api/upload", timeout=WAIT_S,
                            files=[("files", ("x.txt", b"x", "text/plain"))])
        assert upload.status_code == 401
        with pytest.raises(Exception):
            Client(url, verbose=False, auth=(UI_USER, "wrong"))
        _, details = ask(Client(url, verbose=False, auth=(UI_USER, "s3cret-key-for-tests")),
                         "莱芜区如何整改砂石问题")
        assert details["citations"]
    finally:
        thread.stop()
