"""`rag serve` against the real server on loopback (uvicorn in a thread on a free port):
the openai SDK, LangChain's ChatOpenAI and raw HTTP, over the sample corpus.

Most tests use the character-bag embedder and the extractive generator or the scripted
LLM from conftest (seconds); the last one runs the real models (marked slow).
"""
from __future__ import annotations

import json
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from rag import Config, Engine
from rag.server import ServerThread, check_bind, create_app, stream_pieces

from .conftest import CORPUS, JINAN, LAIWU, _fake_llm_class, fake_engine, write_doc

KEY = "test-key-0123456789"
SAND = "莱芜区如何整改砂石问题"
SAND_PARAGRAPH = "砂石资源整治工作专班"  # in the 砂石资源整治 paragraph of the Laiwu report
WAIT_S = 120


def serve(engine: Engine, generators: list[str], tmp_path=None) -> ServerThread:
    uploads = (tmp_path or Path(engine.config.index).parent) / "uploads"
    return ServerThread(create_app(engine, uploads, generators, with_ui=False)).start()


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """The server with a key, offering the extractive generator (default) and a scripted LLM."""
    root = tmp_path_factory.mktemp("api")
    shutil.copytree(CORPUS, root / "corpus")
    engine = fake_engine(root, root / "corpus", llm="extractive", api_key=KEY)
    engine.generators.register("scripted", _fake_llm_class()())
    thread = serve(engine, ["extractive", "scripted"])
    yield thread
    thread.stop()


def client(api, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=api.url + "/v1", api_key=key, max_retries=0, timeout=WAIT_S)


def post(api, path: str, key: str | None = KEY, **kwargs) -> httpx.Response:
    headers = kwargs.pop("headers", {})
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.post(api.url + path, headers=headers, timeout=WAIT_S, **kwargs)


def sse_events(response_text: str) -> list:
    """The data lines of an SSE body, JSON-decoded ([DONE] kept as the string)."""
    return [line[6:] if line[6:] == "[DONE]" else json.loads(line[6:])
            for line in response_text.splitlines() if line.startswith("data: ")]


def cited_numbers(content: str) -> set[int]:
    return {int(n) for n in re.findall(r"\[(\d+)\]", content.split("**来源**")[0])}


def test_models_are_the_generators_the_server_was_started_with(api):
    models = client(api).models.list()
    assert [m.id for m in models.data] == ["rag-extractive", "rag-scripted"]


def test_sand_question_with_the_openai_sdk_cites_the_sand_paragraph_first(api):
    response = client(api).chat.completions.create(model="rag-extractive",
                                                   messages=[{"role": "user", "content": SAND}])
    data = response.model_dump()
    message = response.choices[0].message
    sources = data["sources"]
    assert sources[0]["n"] == 1 and sources[0]["doc_id"] == LAIWU and SAND_PARAGRAPH in sources[0]["text"]
    assert set(sources[0]) == {"n", "doc_id", "doc_title", "doc_date", "section", "paragraph", "text",
                               "supporting", "score"}
    # Only verified citations: every [n] in the text is a source, every source is cited.
    assert cited_numbers(message.content) == {s["n"] for s in sources}
    # Clients that show only text still show the sources: a markdown list closes the content.
    tail = message.content.split("**来源**", 1)[1]
    assert f"- [1] 《{sources[0]['doc_title']}》" in tail and f"第{sources[0]['paragraph']}段" in tail
    annotation = message.annotations[0]
    assert annotation.type == "url_citation" and annotation.url_citation.title.startswith("[1] ")
    span = message.content[annotation.url_citation.start_index:annotation.url_citation.end_index]
    assert span.endswith("[1]") and len(span) > 3
    # The annotation links to the paragraph itself.
    paragraph = httpx.get(annotation.url_citation.url, headers={"Authorization": f"Bearer {KEY}"},
                          timeout=WAIT_S).json()
    assert paragraph["text"] == sources[0]["text"]
    assert data["rag"]["refused"] is False and data["rag"]["generator"] == "extractive"


def test_streaming_gives_the_same_answer_and_sources_on_the_last_chunk(api):
    whole = client(api).chat.completions.create(model="rag-extractive",
                                                messages=[{"role": "user", "content": SAND}]).model_dump()
    chunks = list(client(api).chat.completions.create(model="rag-extractive", stream=True,
                                                      messages=[{"role": "user", "content": SAND}]))
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == whole["choices"][0]["message"]["content"]
    last = chunks[-1].model_dump()
    assert last["choices"][0]["finish_reason"] == "stop"
    assert last["sources"] == whole["sources"] and last["sources"][0]["doc_id"] == LAIWU
    assert SAND_PARAGRAPH in last["sources"][0]["text"]
    assert last["choices"][0]["delta"]["annotations"] == whole["choices"][0]["message"]["annotations"]
    assert not any("sources" in c.model_dump() for c in chunks[:-1])  # sources once, at the end
    # Open WebUI's source events (its citation chips), one per source, before the last chunk.
    events = [c.model_dump()["event"] for c in chunks if "event" in c.model_dump()]
    sources = [e for e in events if e["type"] == "source"]
    assert [e["data"]["source"]["name"].split(" ")[0] for e in sources] == [f"[{s['n']}]" for s in last["sources"]]
    assert [e["data"]["done"] for e in events if e["type"] == "status"] == [False, True]


def test_raw_http_stream_ends_with_sources_then_done(api):
    response = post(api, "/v1/chat/completions", json={"model": "rag-extractive", "stream": True,
                                                       "messages": [{"role": "user", "content": SAND}]})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    assert events[-2]["sources"][0]["doc_id"] == LAIWU and events[-2]["choices"][0]["finish_reason"] == "stop"
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"


def test_langchain_chat_openai(api):
    from langchain_openai import ChatOpenAI
    llm = ChatOpenAI(base_url=api.url + "/v1", api_key=KEY, model="rag-extractive", max_retries=0,
                     timeout=WAIT_S)
    reply = llm.invoke(SAND)
    assert "[1]" in reply.content and "**来源**" in reply.content
    assert "砂石" in reply.content
    streamed = "".join(chunk.content for chunk in llm.stream(SAND))
    assert streamed == reply.content


def test_scripted_llm_answer_is_checked_before_it_is_sent(api):
    response = client(api).chat.completions.create(model="rag-scripted",
                                                   messages=[{"role": "user", "content": SAND}])
    data = response.model_dump()
    assert data["rag"]["generator"] == "test:scripted-llm" and data["sources"]
    assert data["sources"][0]["doc_id"] == LAIWU
    assert cited_numbers(data["choices"][0]["message"]["content"]) == {s["n"] for s in data["sources"]}


def test_a_follow_up_in_messages_is_rewritten(api):
    first = client(api).chat.completions.create(model="rag-extractive",
                                                messages=[{"role": "user", "content": SAND}])
    messages = [{"role": "system", "content": "你是助手"}, {"role": "user", "content": SAND},
                {"role": "assistant", "content": first.choices[0].message.content},
                {"role": "user", "content": "那济南市呢？"}]
    data = client(api).chat.completions.create(model="rag-extractive", messages=messages).model_dump()
    standalone = data["rag"]["standalone_question"]
    assert "济南市" in standalone and "砂石" in standalone and standalone != "那济南市呢？"
    assert data["sources"] and data["sources"][0]["doc_id"] == JINAN


def test_a_question_the_documents_do_not_answer_is_refused_without_sources(api):
    data = client(api).chat.completions.create(
        model="rag-extractive", messages=[{"role": "user", "content": "2030年火星基地建设了多少个发射塔？"}]
    ).model_dump()
    assert data["rag"]["refused"] is True and data["sources"] == []
    assert data["choices"][0]["message"]["annotations"] == []
    assert data["choices"][0]["message"]["content"] and "**来源**" not in data["choices"][0]["message"]["content"]


def test_missing_or_wrong_key_is_401(api):
    for key in (None, "wrong-key"):
        response = post(api, "/v1/chat/completions", key=key,
                        json={"messages": [{"role": "user", "content": SAND}]})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert response.headers["www-authenticate"] == "Bearer"
    with pytest.raises(openai.AuthenticationError):
        client(api, "wrong-key").models.list()
    assert httpx.get(api.url + "/v1/documents", timeout=WAIT_S).status_code == 401
    upload = httpx.post(api.url + "/v1/documents", files=[("files", ("a.txt", b"x", "text/plain"))],
                        timeout=WAIT_S)
    assert upload.status_code == 401


def test_a_2_mb_body_is_413(api):
    big = json.dumps({"messages": [{"role": "user", "content": "砂" * (2 * 1024 * 1024 // 3)}]}).encode()
    response = post(api, "/v1/chat/completions", content=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"

    def chunked():  # no Content-Length: the limit is applied while reading
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]
    response = post(api, "/v1/chat/completions", content=chunked(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413


@pytest.mark.parametrize("body, status, code", [
    (b"{not json", 400, "invalid_json"),
    (b"[1, 2]", 400, "invalid_json"),
    (b"\xff\xfe", 400, "invalid_json"),
    (json.dumps({"messages": "hi"}).encode(), 400, "invalid_messages"),
    (json.dumps({"messages": []}).encode(), 400, "invalid_messages"),
    (json.dumps({"messages": [{"role": "user", "content": 5}]}).encode(), 400, "invalid_type"),
    (json.dumps({"messages": [{"role": "wizard", "content": "hi"}]}).encode(), 400, "invalid_role"),
    (json.dumps({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}).encode(), 400,
     "invalid_content"),
    (json.dumps({"messages": [{"role": "assistant", "content": "hi"}]}).encode(), 400, "invalid_messages"),
    (json.dumps({"stream": "yes", "messages": [{"role": "user", "content": "hi"}]}).encode(), 400,
     "invalid_type"),
    (json.dumps({"k": 0, "messages": [{"role": "user", "content": "hi"}]}).encode(), 400, "invalid_k"),
    (json.dumps({"doc_ids": ["nope.txt"], "messages": [{"role": "user", "content": "hi"}]}).encode(), 400,
     "unknown_document"),
    (json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).encode(), 404,
     "model_not_found"),
    (json.dumps({"messages": [{"role": "user", "content": "砂" * 501}]}).encode(), 400, "question_too_long"),
    (json.dumps({"messages": [{"role": "user", "content": "砂"}] * 51}).encode(), 400, "too_many_messages"),
    (json.dumps({"messages": [{"role": "assistant", "content": "砂" * 4001},
                              {"role": "user", "content": "hi"}]}).encode(), 400, "message_too_long"),
])
def test_bad_requests_get_an_openai_style_error(api, body, status, code):
    response = post(api, "/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and error["type"]
    assert "Traceback" not in response.text


def test_a_request_naming_an_endpoint_is_refused_and_nothing_is_contacted(api):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        response = post(api, "/v1/chat/completions", json={
            "model": "rag-scripted", "base_url": endpoint, "messages": [{"role": "user", "content": SAND}]})
        assert response.status_code == 400 and response.json()["error"]["code"] == "endpoint_not_allowed"
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_search_returns_the_rag_search_list(api):
    response = post(api, "/v1/search", json={"query": SAND, "k": 3})
    hits = response.json()["data"]
    assert len(hits) == 3 and hits[0]["doc_id"] == LAIWU and hits[0]["rank"] == 1
    assert set(hits[0]) >= {"score", "doc_title", "section", "paragraph", "text"}
    assert post(api, "/v1/search", json={"query": "  "}).json()["error"]["code"] == "invalid_question"
    assert post(api, "/v1/search", json={"query": SAND, "k": 10_000}).status_code == 400


def test_documents_upload_ask_and_remove(api, tmp_path):
    auth = {"Authorization": f"Bearer {KEY}"}
    listed = httpx.get(api.url + "/v1/documents", headers=auth, timeout=WAIT_S).json()["data"]
    assert {d["doc_id"] for d in listed} == {LAIWU, JINAN} and not any(d["uploaded"] for d in listed)
    doc = write_doc(tmp_path, "../青石镇通报.txt", ["青石镇2024年新建口袋公园18处,由镇园林站统一管护口袋公园。"],
                    title="青石镇口袋公园建设通报")
    response = httpx.post(api.url + "/v1/documents", headers=auth, timeout=WAIT_S,
                          files=[("files", ("../青石镇通报.txt", doc.read_bytes(), "text/plain")),
                                 ("files", ("tool.exe", b"MZ", "application/octet-stream"))])
    added, refused = response.json()["data"]
    assert added["status"] == "added" and added["doc_id"] == "青石镇通报.txt"  # no folders in the name
    assert refused["status"] == "rejected" and "只支持" in refused["message"]
    data = client(api).chat.completions.create(
        model="rag-extractive", messages=[{"role": "user", "content": "青石镇新建了多少处口袋公园？"}]).model_dump()
    assert data["sources"][0]["doc_id"] == "青石镇通报.txt" and "18" in data["choices"][0]["message"]["content"]

    removed = httpx.delete(api.url + "/v1/documents/青石镇通报.txt", headers=auth, timeout=WAIT_S)
    assert removed.status_code == 200 and removed.json()["data"][0]["doc_id"] == "青石镇通报.txt"
    listed = httpx.get(api.url + "/v1/documents", headers=auth, timeout=WAIT_S).json()["data"]
    assert "青石镇通报.txt" not in {d["doc_id"] for d in listed}
    again = httpx.delete(api.url + "/v1/documents/青石镇通报.txt", headers=auth, timeout=WAIT_S)
    assert again.status_code == 404 and again.json()["error"]["code"] == "unknown_document"
    not_multipart = post(api, "/v1/documents", json={"files": []})
    assert not_multipart.status_code == 400 and not_multipart.json()["error"]["code"] == "invalid_upload"


def test_unknown_route_is_an_openai_style_404(api):
    response = httpx.get(api.url + "/v1/nothing", headers={"Authorization": f"Bearer {KEY}"}, timeout=WAIT_S)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


@pytest.fixture
def slow_api(tmp_path, fake_sample_engine):
    """A server whose scripted LLM writes a character every 0.2 s (~4 s per answer), with
    a 1.5 s wait limit."""
    engine = Engine(fake_sample_engine.config.replace(queue_wait_s=1.5), embedder=fake_sample_engine.embedder)
    slow = _fake_llm_class()(delay_s=0.2, piece_chars=1)
    engine.generators.register("scripted", slow)
    thread = serve(engine, ["scripted", "extractive"], tmp_path)
    thread.slow_llm = slow
    yield thread
    thread.stop()


def test_generation_is_serialised_and_a_long_wait_is_429(slow_api):
    body = {"model": "rag-scripted", "messages": [{"role": "user", "content": SAND}]}
    results: dict[str, httpx.Response] = {}
    first = threading.Thread(target=lambda: results.setdefault("first", post(slow_api, "/v1/chat/completions",
                                                                             key=None, json=body)))
    first.start()
    time.sleep(0.5)  # the first holds the LLM's turn for ~4 s
    second = post(slow_api, "/v1/chat/completions", key=None, json=body)
    assert second.status_code == 429 and int(second.headers["retry-after"]) >= 1
    assert second.json()["error"]["code"] == "rate_limit_exceeded"
    # Answers without the LLM have their own queue: not held up by the LLM's turn.
    quick = post(slow_api, "/v1/chat/completions", key=None,
                 json={**body, "model": "rag-extractive"})
    assert quick.status_code == 200
    first.join(WAIT_S)
    assert results["first"].status_code == 200 and results["first"].json()["sources"]


def test_a_client_that_disconnects_mid_stream_frees_its_turn(slow_api):
    body = {"model": "rag-scripted", "stream": True, "messages": [{"role": "user", "content": SAND}]}
    with httpx.stream("POST", slow_api.url + "/v1/chat/completions", json=body, timeout=WAIT_S) as response:
        assert response.status_code == 200
        next(response.iter_lines())  # the answer has started; then the client goes away
    # The abandoned answer would hold the turn ~4 s more; the next request gets it within
    # the 1.5 s wait limit (else 429), because the abandoned generation stopped.
    with httpx.stream("POST", slow_api.url + "/v1/chat/completions", json=body, timeout=WAIT_S) as response:
        assert response.status_code == 200, response.read()
        events = sse_events("\n".join(response.iter_lines()))
    assert events[-1] == "[DONE]" and events[-2]["sources"]
    assert len(slow_api.slow_llm.calls) == 2


def test_stream_pieces_keep_the_text():
    text = "一是强化组织领导。区委、区政府高度重视[1]。\n\n**来源**\n- [1] 《莱芜》 第5段"
    pieces = stream_pieces(text)
    assert "".join(pieces) == text and max(map(len, pieces)) <= 24


@pytest.mark.parametrize("host, key, ok", [("127.0.0.1", "", True), ("localhost", "", True), ("::1", "", True),
                                           ("0.0.0.0", "", False), ("192.168.1.5", "", False),
                                           ("0.0.0.0", KEY, True)])
def test_an_open_address_needs_a_key(host, key, ok):
    from rag.config import ConfigError
    if ok:
        check_bind(host, key)
    else:
        with pytest.raises(ConfigError, match="without an access key"):
            check_bind(host, key)


@pytest.mark.slow
def test_sand_question_with_the_local_llm_in_both_modes(tmp_path, sample_engine):
    """The real embedder and the bundled LLM, through the API, streaming and not."""
    shutil.copytree(sample_engine.config.index, tmp_path / "index")
    engine = Engine(Config(index=str(tmp_path / "index"), corpus=str(CORPUS), llm="local"))
    thread = serve(engine, ["local"], tmp_path)
    try:
        api_client = openai.OpenAI(base_url=thread.url + "/v1", api_key="none", max_retries=0, timeout=600)
        messages = [{"role": "user", "content": SAND}]
        data = api_client.chat.completions.create(model="rag-local", messages=messages).model_dump()
        assert data["rag"]["generator"] == "local", data["rag"]
        assert data["sources"][0]["doc_id"] == LAIWU and SAND_PARAGRAPH in data["sources"][0]["text"]
        chunks = list(api_client.chat.completions.create(model="rag-local", messages=messages, stream=True))
        last = chunks[-1].model_dump()
        assert last["sources"][0]["doc_id"] == LAIWU and SAND_PARAGRAPH in last["sources"][0]["text"]
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert cited_numbers(content) == {s["n"] for s in last["sources"]}
    finally:
        thread.stop()
