"""`rag serve`: an OpenAI-compatible API whose answers carry their sources, with the
Gradio UI on the same server at /ui.

    POST   /v1/chat/completions   the conversation is ``messages``; ``model`` names a generator
    GET    /v1/models             the generators this server was started with
    POST   /v1/search             {"query", "k", "doc_ids"} → the ``rag search --json`` list
    GET    /v1/documents          the indexed documents
    POST   /v1/documents          multipart upload (field ``files``), indexed at once
    DELETE /v1/documents/{id}     remove a document (and its file, if it was uploaded)
    GET    /v1/documents/{id}/paragraphs/{n}   one paragraph (what answer annotations link to)

An answer's ``content`` carries the inline [n] marks and ends with a markdown list of the
cited sources, so a client that shows only text still shows them; the same sources come
structured in a top-level ``sources`` list (on the last streamed chunk before [DONE]),
as ``annotations``, and as Open WebUI source events. Everything is sent after the
citation check: only verified citations ever reach a client.

Security: bound to 127.0.0.1 by default; with ``api_key`` every /v1 route needs
``Authorization: Bearer <key>`` and the UI asks for it as its password; a non-loopback
address without a key is refused. Requests cannot name an endpoint: the generators (and
any OpenAI endpoint with its key) come from the server's configuration only.
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import re
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from embeddings import EmbeddingError

from .answer import Answer
from .config import Config, ConfigError
from .engine import Engine
from .factory import model_id, served_generators
from .generators import GeneratorError
from .indexer import NoDocuments
from .retriever import QueryError
from .slots import AnswerQueues, Busy, Cancelled
from .store import IndexStateError

log = logging.getLogger(__name__)

UI_PATH = "/ui"
UI_USER = "rag"  # the UI's login name; its password is the API key
SOURCES_HEADING = "**来源**"  # opens the markdown list of sources at the end of an answer
# Fields that would choose an endpoint or a key: such a request is refused, never obeyed.
ENDPOINT_FIELDS = {"base_url", "api_base", "api_key", "endpoint", "openai_api_key", "url"}
KEEPALIVE_S = 1.0  # an SSE comment this often while an answer is generated (and a disconnect check)
STREAM_PIECE_CHARS = 24  # the checked answer is streamed in pieces of about this size
UPLOAD_OVERHEAD_BYTES = 64 * 1024  # multipart framing on top of an upload's own size
ROLES = {"system", "developer", "user", "assistant"}
_SENTENCE_END = re.compile(r"(?<=[。！？!?；;\n])")


class ApiError(Exception):
    """An OpenAI-style error response: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, code: str, kind: str = "invalid_request_error",
                 headers: dict[str, str] | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.kind = status, message, code, kind
        self.headers, self.param = headers or {}, param

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve to anything


def check_bind(host: str, api_key: str) -> None:
    """ConfigError unless the address is this machine's only, or an access key is set."""
    if not is_loopback(host) and not api_key:
        raise ConfigError(
            f"refusing to serve on {host} without an access key: anyone who can reach it could ask, "
            "upload and remove documents. Set --api-key (or RAG_API_KEY), or bind to 127.0.0.1")


# --- request parsing ----------------------------------------------------------------

def _text_of(content: Any, where: str) -> str:
    """A message's text: a string, or OpenAI content parts of type text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ApiError(400, f"{where}: only text content is supported "
                                    '(a string, or parts {"type": "text", "text": "…"})', "invalid_content")
            texts.append(part["text"])
        return "".join(texts)
    if content is None:
        return ""
    raise ApiError(400, f"{where}.content must be a string or a list of text parts", "invalid_type")


def strip_sources(answer: str) -> str:
    """An earlier answer of ours without its list of sources (clients send it back)."""
    return answer.split("\n\n" + SOURCES_HEADING, 1)[0].strip()


@dataclass
class ChatRequest:
    generator: str  # generator name (local, extractive, …)
    model: str  # the model id it was asked by
    question: str
    history: list[tuple[str, str]]
    stream: bool
    k: int | None
    doc_ids: list[str] | None


def _optional_k(body: dict, config: Config) -> int | None:
    k = body.get("k")
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= config.max_k:
        raise ApiError(400, f"k must be an integer from 1 to {config.max_k}", "invalid_k", param="k")
    return k


def _question(text: str, config: Config, param: str) -> str:
    question = text.strip()
    if len(question) > config.max_question_chars:
        raise ApiError(400, f"the question is too long ({len(question)} characters; at most "
                            f"{config.max_question_chars})", "question_too_long", param=param)
    return question


def _optional_doc_ids(body: dict, documents: Callable[[], dict]) -> list[str] | None:
    doc_ids = body.get("doc_ids")
    if doc_ids is None:
        return None
    if not isinstance(doc_ids, list) or not all(isinstance(d, str) for d in doc_ids):
        raise ApiError(400, "doc_ids must be a list of document ids (GET /v1/documents)", "invalid_type",
                       param="doc_ids")
    known = documents()  # read only when asked for: the manifest is a file read
    unknown = [d for d in doc_ids if d not in known]
    if unknown:
        raise ApiError(400, f"not in the index: {', '.join(unknown)}", "unknown_document", param="doc_ids")
    return doc_ids or None


def parse_json(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON ({exc})", "invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", "invalid_json")
    return body


def parse_chat(body: dict, models: dict[str, str], default: str, config: Config,
               documents: Callable[[], dict]) -> ChatRequest:
    named = sorted(ENDPOINT_FIELDS & set(body))
    if named:
        raise ApiError(400, f"{', '.join(named)}: a request cannot choose an endpoint or key; this server "
                            f"answers only with its own generators ({', '.join(models)})",
                       "endpoint_not_allowed", param=named[0])
    name = body.get("model", default)
    if not isinstance(name, str):
        raise ApiError(400, "model must be a string", "invalid_type", param="model")
    if name not in models:
        raise ApiError(404, f"the model {name!r} does not exist on this server; available: "
                            f"{', '.join(models)}", "model_not_found", param="model")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "stream must be true or false", "invalid_type", param="stream")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list", "invalid_messages", param="messages")
    if len(messages) > config.max_messages:
        raise ApiError(400, f"too many messages ({len(messages)}; at most {config.max_messages})",
                       "too_many_messages", param="messages")
    turns: list[tuple[str, str]] = []  # (role, text), system messages left out
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise ApiError(400, f"{where} must be an object with role and content", "invalid_type")
        role = message.get("role")
        if role not in ROLES:
            raise ApiError(400, f"{where}.role must be one of {', '.join(sorted(ROLES))}", "invalid_role")
        text = _text_of(message.get("content"), where)
        if len(text) > config.max_message_chars:
            raise ApiError(400, f"{where} is too long ({len(text)} characters; at most "
                                f"{config.max_message_chars})", "message_too_long")
        if role in ("user", "assistant"):
            turns.append((role, text))
    if not turns or turns[-1][0] != "user" or not turns[-1][1].strip():
        raise ApiError(400, "the last message must be the user's question", "invalid_messages")
    history, asked = [], None
    for role, text in turns[:-1]:  # a question with the answer that followed it
        if role == "user":
            asked = text.strip()
        elif asked:
            history.append((asked, strip_sources(text)))
            asked = None
    return ChatRequest(models[name], name, _question(turns[-1][1], config, "messages"), history, stream,
                       _optional_k(body, config), _optional_doc_ids(body, documents))


# --- answers as OpenAI objects ------------------------------------------------------

def source_dict(citation) -> dict:
    return {**citation.to_dict(), "score": round(citation.hit.score, 6)}


def sources_markdown(answer: Answer) -> str:
    """The answer's text, then a short markdown list of its cited sources."""
    if not answer.citations:
        return answer.answer
    lines = []
    for c in answer.citations:
        p = c.hit.paragraph
        # The paragraph's own heading: a full section path runs to a hundred characters.
        where = " · ".join(x for x in (p.section[-1] if p.section else "", f"第{p.number}段") if x)
        date = f"（{c.hit.doc_date}）" if c.hit.doc_date else ""
        lines.append(f"- [{c.n}] 《{c.hit.doc_title}》{date} {where}")
    return answer.answer + "\n\n" + SOURCES_HEADING + "\n" + "\n".join(lines)


def paragraph_url(base_url: str, citation) -> str:
    p = citation.hit.paragraph
    return f"{base_url}v1/documents/{quote(p.doc_id, safe='')}/paragraphs/{p.number}"


def annotations(content: str, answer: Answer, base_url: str) -> list[dict]:
    """OpenAI url_citation annotations: for each [n] in the answer, the span of the
    sentence it closes (marks right after one another share it) and a link to the paragraph."""
    by_n = {c.n: c for c in answer.citations}
    body = content.split("\n\n" + SOURCES_HEADING, 1)[0]
    out, previous_end, sentence_start = [], 0, 0
    for m in re.finditer(r"\[(\d+)\]", body):
        citation = by_n.get(int(m.group(1)))
        if citation is None:
            continue
        text_end = m.start()
        while text_end > previous_end and body[text_end - 1] in "。！？!?；;":
            text_end -= 1  # the sentence's own closing mark is not its start
        if text_end > previous_end:  # not a mark right after another: a new sentence
            sentence_start = max(previous_end, max(body.rfind(c, previous_end, text_end) for c in "。！？!?；;\n") + 1)
        out.append({"type": "url_citation", "url_citation": {
            "start_index": sentence_start, "end_index": m.end(), "url": paragraph_url(base_url, citation),
            "title": f"[{citation.n}] 《{citation.hit.doc_title}》 第{citation.hit.paragraph.number}段"}})
        previous_end = m.end()
    return out


def open_webui_sources(answer: Answer, base_url: str) -> list[dict]:
    """Open WebUI's source events (its citation chips), one per cited paragraph, in order."""
    return [{"type": "source", "data": {
        "document": [c.hit.paragraph.text],
        "metadata": [{"source": f"[{c.n}] 《{c.hit.doc_title}》", "date": c.hit.doc_date,
                      "section": c.hit.paragraph.section_path, "paragraph": c.hit.paragraph.number}],
        "source": {"name": f"[{c.n}] 《{c.hit.doc_title}》 第{c.hit.paragraph.number}段",
                   "url": paragraph_url(base_url, c)}}} for c in answer.citations]


def status(description: str, done: bool) -> dict:
    """An Open WebUI status event (the line it shows above an answer in progress)."""
    return {"type": "status", "data": {"description": description, "done": done}}


def rag_details(answer: Answer) -> dict:
    """What the answer pipeline did, for clients that want it (``rag`` field)."""
    return {"question": answer.question, "standalone_question": answer.standalone_question,
            "refused": answer.refused, "generator": answer.generator, "flags": answer.flags,
            "notice": answer.notice, "timings": {k: round(v, 3) for k, v in answer.timings.items()}}


def completion(answer: Answer, request: ChatRequest, base_url: str, completion_id: str, created: int) -> dict:
    content = sources_markdown(answer)
    return {"id": completion_id, "object": "chat.completion", "created": created, "model": request.model,
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": content,
                                     "annotations": annotations(content, answer, base_url)}}],
            "sources": [source_dict(c) for c in answer.citations], "rag": rag_details(answer)}


def stream_pieces(text: str) -> list[str]:
    """The checked answer cut at sentence ends into pieces of about STREAM_PIECE_CHARS."""
    pieces, current = [], ""
    for part in _SENTENCE_END.split(text):
        while len(part) > STREAM_PIECE_CHARS:
            head, part = part[:STREAM_PIECE_CHARS], part[STREAM_PIECE_CHARS:]
            if current:
                pieces.append(current)
                current = ""
            pieces.append(head)
        if len(current) + len(part) > STREAM_PIECE_CHARS and current:
            pieces.append(current)
            current = ""
        current += part
    if current:
        pieces.append(current)
    return pieces


def _sse(data: dict | str) -> str:
    return "data: " + (data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)) + "\n\n"


def explain(exc: Exception) -> ApiError:
    """An answering failure as the error a client gets."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, Busy):
        return ApiError(429, str(exc), "rate_limit_exceeded", "rate_limit_error",
                        {"Retry-After": str(exc.retry_after)})
    if isinstance(exc, QueryError):
        return ApiError(400, str(exc), "invalid_question")
    if isinstance(exc, GeneratorError):
        return ApiError(503, f"the generator is unavailable: {exc}", "generator_unavailable", "server_error")
    if isinstance(exc, (IndexStateError, NoDocuments, EmbeddingError)):
        return ApiError(503, f"the index is unavailable: {exc}", "index_unavailable", "server_error")
    log.error("request failed", exc_info=exc)
    return ApiError(500, f"internal error ({type(exc).__name__}); see the server log", "internal_error",
                    "server_error")


# --- running answers off the event loop ----------------------------------------------

async def _watch_disconnect(request: Request, cancelled: threading.Event) -> None:
    """Set ``cancelled`` when the client goes away (polled: the work runs in a thread)."""
    while not cancelled.is_set():
        if await request.is_disconnected():
            cancelled.set()
            return
        await asyncio.sleep(0.25)


async def run_in_thread(work: Callable[[], Any], request: Request | None = None,
                        cancelled: threading.Event | None = None) -> Any:
    """``work()`` in its own thread; while it runs, a disconnect of ``request`` sets
    ``cancelled`` (so a wait in the queue or the generation stops at its next check)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future = loop.create_future()

    def target() -> None:
        try:
            outcome = (work(), None)
        except BaseException as exc:  # handed to the awaiting coroutine
            outcome = (None, exc)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the server stopped meanwhile: nobody is waiting
            pass

    def settle(result: Any, exc: BaseException | None) -> None:
        if not done.done():
            done.set_exception(exc) if exc is not None else done.set_result(result)

    threading.Thread(target=target, name="rag-request", daemon=True).start()
    watcher = (asyncio.create_task(_watch_disconnect(request, cancelled))
               if request is not None and cancelled is not None else None)
    try:
        return await asyncio.shield(done)
    finally:
        if watcher:
            watcher.cancel()


class Server:
    """The state behind the routes: the engine, the offered generators, the queues."""

    def __init__(self, engine: Engine, uploads_dir: Path, generators: list[str] | None = None,
                 queues: AnswerQueues | None = None):
        self.engine, self.config = engine, engine.config
        self.uploads_dir = Path(uploads_dir)
        self.generators = generators or served_generators(engine.config)
        self.models = {model_id(n): n for n in self.generators}  # model id → generator name
        self.models.update({n: n for n in self.generators})  # a bare name works too
        self.default_model = model_id(self.generators[0])
        self.queues = queues or AnswerQueues(engine.config)

    def documents(self) -> dict[str, dict]:
        return self.engine.store.manifest().documents if self.engine.store.exists() else {}

    def answer(self, chat: ChatRequest, cancelled: threading.Event,
               on_token: Callable[[str], None] | None = None) -> Answer:
        """Wait for a turn and answer (in a worker thread); Busy, Cancelled or a failure."""
        answerer = self.engine.answerer(chat.generator)

        def token(piece: str) -> None:
            if cancelled.is_set():  # stops the generation: the client is gone
                raise Cancelled("the client went away during the answer")
            if on_token:
                on_token(piece)
        with self.queues.for_generator(answerer.generator).turn(cancelled):
            return answerer.ask(chat.question, chat.history, chat.k, chat.doc_ids, on_token=token)


# --- the app ------------------------------------------------------------------------

class RequireKey:
    """With an API key configured, every /v1 request needs ``Authorization: Bearer <key>``
    (compared in constant time); the UI has its own login with the key as password."""

    def __init__(self, app, api_key: str):
        self.app, self.key = app, api_key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.key and scope.get("path", "").startswith("/v1"):
            header = dict(scope.get("headers") or []).get(b"authorization", b"")
            scheme, _, token = header.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
                error = ApiError(401, "missing or wrong API key: send Authorization: Bearer <key>",
                                 "invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
                return await error.response()(scope, receive, send)
        return await self.app(scope, receive, send)


class BodyLimit:
    """Reads an API request's body up to its limit before the app sees it: a larger one
    gets 413 (without reading the rest). Uploads have their own, larger limit."""

    def __init__(self, app, json_limit: int, upload_limit: int):
        self.app, self.json_limit, self.upload_limit = app, json_limit, upload_limit

    def _limit(self, scope) -> int | None:
        path = scope.get("path", "")
        if path.startswith("/v1/documents") and scope.get("method") == "POST":
            return self.upload_limit
        if path.startswith("/v1/"):
            return self.json_limit
        return None  # the UI: Gradio applies its own max_file_size

    async def __call__(self, scope, receive, send):
        limit = self._limit(scope) if scope["type"] == "http" else None
        if limit is None:
            return await self.app(scope, receive, send)
        too_large = ApiError(413, f"the request body is larger than {limit} bytes", "request_too_large")
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await too_large.response()(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return await too_large.response()(scope, receive, send)
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes
        return await self.app(scope, replay, send)


def create_app(engine: Engine, uploads_dir: Path | None = None, generators: list[str] | None = None,
               with_ui: bool = True) -> FastAPI:
    """The API (and the UI at /ui) over ``engine``; uploads are saved into ``uploads_dir``
    (default: ``uploads/`` next to the corpus)."""
    from ui.uploads import MAX_UPLOAD_BYTES, remove_uploaded, safe_filename, upload_document

    config = engine.config
    uploads_dir = Path(uploads_dir) if uploads_dir else Path(config.corpus).parent / "uploads"
    server = Server(engine, uploads_dir, generators)
    app = FastAPI(title="政策文件问答 API", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.rag = server

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return ApiError(exc.status_code, str(exc.detail), code).response()

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        where = ".".join(str(x) for x in exc.errors()[0].get("loc", ())) if exc.errors() else "request"
        return ApiError(400, f"invalid {where}: {exc.errors()[0].get('msg', '') if exc.errors() else ''}",
                        "invalid_request").response()

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        return explain(exc).response()

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_id(n), "object": "model", "created": 0,
                                            "owned_by": "rag", "generator": n} for n in server.generators]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = parse_json(await request.body())
        chat = parse_chat(body, server.models, server.default_model, config, server.documents)
        base_url = str(request.base_url)
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        cancelled = threading.Event()
        if not chat.stream:
            try:
                answer = await run_in_thread(lambda: server.answer(chat, cancelled), request, cancelled)
            except Cancelled:
                return Response(status_code=499)  # nobody is listening any more
            except Exception as exc:
                return explain(exc).response()
            return completion(answer, chat, base_url, completion_id, created)
        return await stream_completion(request, chat, base_url, completion_id, created, cancelled)

    async def stream_completion(request, chat, base_url, completion_id, created, cancelled):
        started = asyncio.Event()  # the turn was granted: from here on the status is 200
        loop = asyncio.get_running_loop()

        def work():
            return server.answer(chat, cancelled, on_token=lambda _: loop.call_soon_threadsafe(started.set))

        task = asyncio.ensure_future(run_in_thread(work, request, cancelled))
        # 429 (and other failures before any output) must be a status, not a stream:
        # wait until the answer has started or failed before sending headers.
        waiter = asyncio.ensure_future(started.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done() and task.exception() is not None:
            if isinstance(task.exception(), Cancelled):
                return Response(status_code=499)
            return explain(task.exception()).response()

        def chunk(delta: dict | None, finish: str | None = None, **extra) -> dict:
            choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish,
                                                "logprobs": None}]
            return {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                    "model": chat.model, "choices": choices, **extra}

        async def events() -> AsyncIterator[str]:
            try:
                yield _sse(chunk({"role": "assistant", "content": ""}))
                yield _sse(chunk(None, event=status("正在检索文档并生成回答…", False)))
                while not task.done():  # the draft is being generated and checked
                    await asyncio.wait({task}, timeout=KEEPALIVE_S)
                    if not task.done():
                        yield ": generating\n\n"  # keeps proxies patient; a failed send means the client left
                try:
                    answer = task.result()
                except Exception as exc:
                    yield _sse(explain(exc).body())
                    yield _sse("[DONE]")
                    return
                content = sources_markdown(answer)
                for piece in stream_pieces(content):
                    yield _sse(chunk({"content": piece}))
                for event in [*open_webui_sources(answer, base_url), status("回答已核对来源", True)]:
                    yield _sse(chunk(None, event=event))
                yield _sse(chunk({"annotations": annotations(content, answer, base_url)}, "stop",
                                 sources=[source_dict(c) for c in answer.citations], rag=rag_details(answer)))
                yield _sse("[DONE]")
            finally:
                cancelled.set()  # a client that left frees its turn at the next token

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/v1/search")
    async def search(request: Request):
        body = parse_json(await request.body())
        query = body.get("query", body.get("question"))
        if not isinstance(query, str) or not query.strip():
            raise ApiError(400, "query must be a non-empty string", "invalid_question", param="query")
        query = _question(query, config, "query")
        k, doc_ids = _optional_k(body, config), _optional_doc_ids(body, server.documents)
        cancelled = threading.Event()

        def work():
            with server.queues.cpu.turn(cancelled):
                return engine.search(query, k, doc_ids, progress=False)
        try:
            hits = await run_in_thread(work, request, cancelled)
        except Cancelled:
            return Response(status_code=499)
        except Exception as exc:
            return explain(exc).response()
        return {"object": "list", "data": [h.to_dict() for h in hits]}

    def document_row(doc_id: str, meta: dict) -> dict:
        path = Path(meta.get("path", ""))
        return {"doc_id": doc_id, "title": meta.get("title", doc_id), "date": meta.get("date", ""),
                "paragraphs": meta.get("paragraphs", 0),
                "uploaded": uploads_dir.resolve() in path.resolve().parents}  # no server paths are shown

    @app.get("/v1/documents")
    async def list_documents():
        return {"object": "list", "data": [document_row(d, m) for d, m in server.documents().items()]}

    @app.get("/v1/documents/{doc_id}/paragraphs/{number}")
    async def paragraph(doc_id: str, number: int):
        if doc_id not in server.documents():
            raise ApiError(404, f"no document {doc_id!r} in the index", "unknown_document")
        try:
            p = engine.store.view().paragraph(f"{doc_id}#{number}")
        except KeyError:
            raise ApiError(404, f"document {doc_id!r} has no paragraph {number}", "unknown_paragraph") from None
        meta = server.documents()[doc_id]
        return {"doc_id": doc_id, "doc_title": meta.get("title", doc_id), "doc_date": meta.get("date", ""),
                "section": p.section_path, "paragraph": p.number, "text": p.text}

    @app.post("/v1/documents")
    async def upload(request: Request):
        try:
            form = await request.form(max_files=20, max_fields=20)
        except Exception as exc:  # not multipart, or malformed
            raise ApiError(400, f"expected a multipart/form-data upload with field 'files' ({exc})",
                           "invalid_upload") from None
        files = [f for f in form.getlist("files") if hasattr(f, "filename")]
        if not files:
            raise ApiError(400, "no files: send them as multipart field 'files'", "invalid_upload", param="files")
        results = []
        for f in files:
            with tempfile.TemporaryDirectory(prefix="rag-upload-") as folder:
                # Saved under its (sanitised) name: the name is what the document is called.
                staged = Path(folder) / (safe_filename(f.filename or "") or "upload")
                staged.write_bytes(await f.read())
                results.append(await run_in_thread(
                    lambda: upload_document(engine, staged, uploads_dir, MAX_UPLOAD_BYTES)))
        return {"object": "list", "data": [r.to_dict() for r in results]}

    async def remove(doc_ids: list[str]):
        try:
            removed = await run_in_thread(lambda: remove_uploaded(engine, doc_ids, uploads_dir))
        except KeyError as exc:
            raise ApiError(404, str(exc.args[0] if exc.args else exc), "unknown_document") from None
        except IndexStateError as exc:
            raise explain(exc) from None
        return {"object": "list", "deleted": True,
                "data": [{"doc_id": d, "title": m.get("title", d)} for d, m in removed.items()]}

    @app.delete("/v1/documents/{doc_id}")
    async def remove_one(doc_id: str):
        return await remove([doc_id])

    @app.delete("/v1/documents")
    async def remove_many(request: Request):
        body = parse_json(await request.body())
        doc_ids = body.get("doc_ids")
        if not isinstance(doc_ids, list) or not doc_ids or not all(isinstance(d, str) for d in doc_ids):
            raise ApiError(400, "doc_ids must be a non-empty list of document ids", "invalid_type",
                           param="doc_ids")
        return await remove(doc_ids)

    if with_ui:
        import gradio as gr

        from ui.app import build_app
        from ui.assets import CSS, JS, THEME
        blocks = build_app(engine, uploads_dir, server.generators, server.queues)

        def ui_login(username: str, password: str) -> bool:
            return hmac.compare_digest(password.encode(), config.api_key.encode())

        gr.mount_gradio_app(app, blocks, path=UI_PATH, auth=ui_login if config.api_key else None,
                            auth_message="请输入访问密钥（API key）" if config.api_key else None,
                            theme=THEME, css=CSS, js=JS, max_file_size=MAX_UPLOAD_BYTES,
                            footer_links=["api", "settings"])

        @app.get("/", include_in_schema=False)
        async def home():
            return RedirectResponse(UI_PATH + "/")

    # The key is checked first (outermost), so nobody without it gets a body read.
    app.add_middleware(BodyLimit, json_limit=config.max_request_bytes,
                       upload_limit=MAX_UPLOAD_BYTES + UPLOAD_OVERHEAD_BYTES)
    app.add_middleware(RequireKey, api_key=config.api_key)
    return app


# --- running the server -------------------------------------------------------------

def bind(host: str, port: int) -> socket.socket:
    """A listening socket (OSError when the port is taken or the address is not ours)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _quiet_stream_cancellation(record: logging.LogRecord) -> bool:
    """On shutdown uvicorn cancels the event streams still open (a page's, a client's)
    and logs each as a failure with a traceback; they are not failures."""
    if record.exc_info and record.exc_info[0] is asyncio.CancelledError:
        return False
    text = str(record.msg)  # the lifespan's shutdown reports it as a traceback text
    return not (text.startswith("Cancel %s running task(s)") or text.rstrip().endswith("CancelledError"))


def _uvicorn(app, sock: socket.socket):
    import uvicorn
    host, port = sock.getsockname()[:2]
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           timeout_graceful_shutdown=2, ws="none"))
    error_log = logging.getLogger("uvicorn.error")
    if _quiet_stream_cancellation not in error_log.filters:
        error_log.addFilter(_quiet_stream_cancellation)
    return server


class ServerThread:
    """The app served by uvicorn in a background thread (tests, benchmarks)."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        self.sock = bind(host, port)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.server = _uvicorn(app, self.sock)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="rag-server", daemon=True)

    def start(self, timeout: float = 60.0) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server on {self.url} did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        # Not graceful: open Gradio event streams would hold a graceful stop for seconds.
        self.server.should_exit = self.server.force_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


def serve(engine: Engine, host: str = "127.0.0.1", port: int = 8000, uploads_dir: Path | None = None,
          announce: Callable[[str], None] = print) -> None:
    """`rag serve`: index the corpus if there is no index yet, then serve until Ctrl-C.
    ConfigError for an open address without a key; OSError when the port is unusable."""
    check_bind(host, engine.config.api_key)
    engine.ensure_index()
    sock = bind(host, port)
    app = create_app(engine, uploads_dir)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{sock.getsockname()[1]}"
    announce(f"政策文件问答：{url}{UI_PATH}/  （API：{url}/v1，模型：{', '.join(app.state.rag.generators)}"
             f"{'；需要 API key' if engine.config.api_key else ''}；按 Ctrl-C 停止）")
    try:
        _uvicorn(app, sock).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn stops gracefully on Ctrl-C, then re-raises it
        pass
