"""The Gradio app: a chat whose answers cite their source paragraphs, and the documents.

    app = build_app(engine, uploads_dir=Path("data/uploads"), generators=["local", "extractive"])

It is served by ``rag serve`` (``rag.server``), mounted at /ui next to the API. The page
chooses among the generators the server was started with, by name: an endpoint and its
key come from the server's configuration only, never from a request.

Every handler is exposed by name, so gradio_client can drive the app like the page does:
/ask, /new_conversation, /documents, /upload and /remove. A conversation lives in a
per-session ``gr.State`` (each browser tab, each client, has its own), never in a global.
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported

import html
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from embeddings import EmbeddingError
from rag.answer import Answer
from rag.config import Config
from rag.documents import SUPPORTED_SUFFIXES
from rag.engine import Engine
from rag.factory import served_generators
from rag.generators import GeneratorError
from rag.indexer import NoDocuments
from rag.retriever import QueryError
from rag.slots import AnswerQueues, Busy, Cancelled
from rag.store import IndexStateError

from .render import answer_html, draft_html, error_html, question_html
from .uploads import MAX_UPLOAD_BYTES, add_upload, discard_cached, remove_documents

log = logging.getLogger(__name__)

GENERATOR_LABELS = {"local": "本地模型（Qwen2.5 1.5B）", "extractive": "摘录模式（不用大模型）"}
# Failures a user can act on, shown in the chat with what went wrong.
FAILURES = [(GeneratorError, "生成模型不可用"), (QueryError, "无法检索这个问题"),
            (IndexStateError, "索引不可用"), (NoDocuments, "没有可检索的文档"),
            (EmbeddingError, "向量模型不可用"), (Busy, "服务器繁忙")]
MAX_TOP_K = 10
# The longest wait for the next token (or the end) of an answer. Starting the local
# model, a queue of other users' answers on the single llama.cpp slot, and a slow
# endpoint (request_timeout per call) all fit in it.
ANSWER_IDLE_LIMIT_S = 300
ASK_CONCURRENCY = 4  # questions answered at once; the rest wait in Gradio's queue
DOCUMENT_HEADERS = ["标题", "日期", "段落数", "文档编号"]
_DONE = object()  # end of an answer's token stream
_EVIDENCE = object()  # marks the retrieved paragraphs, sent before the first token


@dataclass
class Turn:
    """One question of a conversation and its answer, or why there is none."""
    question: str
    answer: Answer | None = None
    error: str = ""


def chat_messages(conversation: list[Turn], pending: tuple | None = None) -> list[dict]:
    """The chatbot's messages; ``pending`` is a (question, draft[, evidence, evidence_s])
    still being answered."""
    messages = []
    for turn_no, turn in enumerate(conversation, start=1):
        reply = answer_html(turn_no, turn.answer) if turn.answer else error_html(turn.error)
        messages += [{"role": "user", "content": question_html(turn.question)},
                     {"role": "assistant", "content": reply}]
    if pending:
        question, draft, *evidence = pending
        messages += [{"role": "user", "content": question_html(question)},
                     {"role": "assistant", "content": draft_html(draft, *evidence)}]
    return messages


def turn_details(turn: Turn) -> dict:
    """The last turn as data, for API clients (the page shows it as HTML)."""
    return turn.answer.to_dict() if turn.answer else {"error": turn.error}


def generator_label(name: str, config: Config) -> str:
    """How the page names a generator the server offers."""
    if name == "openai":
        return f"OpenAI 兼容接口（{config.model or 'default'}）"
    if name.startswith("gguf:"):
        return f"自选模型 {Path(name.split(':', 1)[1]).name}"
    return GENERATOR_LABELS.get(name, name)


def _explain(exc: Exception) -> str:
    for kind, meaning in FAILURES:
        if isinstance(exc, kind):
            return f"{meaning}。{exc}"
    log.exception("answering failed")
    return f"内部错误（{type(exc).__name__}: {exc}），详情见服务器日志。"


def indexed_documents(engine: Engine) -> dict[str, dict]:
    return engine.store.manifest().documents if engine.store.exists() else {}


def build_app(engine: Engine, uploads_dir: Path, generators: list[str] | None = None,
              queues: AnswerQueues | None = None) -> gr.Blocks:
    """The app over ``engine``'s index; uploads are saved into ``uploads_dir``. The page
    offers ``generators`` (default: the configuration's, ``served_generators``; the first
    is preselected) and answers in turn through ``queues``, shared with the API."""
    offered = list(generators or served_generators(engine.config))
    queues = queues or AnswerQueues(engine.config)
    llm_choices = [(generator_label(name, engine.config), name) for name in offered]

    def check_request(llm: str, top_k: float) -> int:
        """The number of paragraphs asked for; the request is refused unless it chooses
        one of the offered generators and a top-k the slider allows."""
        if llm not in offered:
            raise GeneratorError(f"这个服务器没有提供生成方式 {llm!r}；可选：{'、'.join(offered)}")
        if isinstance(top_k, bool) or not isinstance(top_k, (int, float)) or not 1 <= top_k <= MAX_TOP_K:
            raise QueryError(f"检索段落数必须在 1 到 {MAX_TOP_K} 之间")
        return int(top_k)

    def ask(message: str, scope: list[str] | None, llm: str, top_k: float,
            conversation: list[Turn]) -> Iterator[tuple]:
        """Answer a question in this session's conversation, streaming the draft."""
        question = (message or "").strip()
        if not question:
            yield "", chat_messages(conversation), conversation, None
            return
        history = [(t.question, t.answer.answer) for t in conversation if t.answer]
        tokens: queue.Queue = queue.Queue()
        outcome: dict = {}
        gone = threading.Event()  # the page went away: give up the turn

        def on_token(token: str) -> None:
            if gone.is_set():
                raise Cancelled("the page went away during the answer")
            tokens.put(token)

        def on_evidence(hits) -> None:
            tokens.put((_EVIDENCE, hits, time.perf_counter() - asked_at))

        def answer_in_background() -> None:
            # Answerer.ask calls on_token synchronously; running it here lets this
            # generator hand each token to Gradio as soon as it exists.
            try:
                k = check_request(llm, top_k)
                answerer = engine.answerer(llm)
                with queues.for_generator(answerer.generator).turn(gone):
                    outcome["answer"] = answerer.ask(question, history, k, scope or None, on_token=on_token,
                                                     on_evidence=on_evidence)
            except Cancelled:
                outcome["error"] = "已取消"
            except Exception as exc:  # every failure becomes a message in the chat
                outcome["error"] = _explain(exc)
            finally:
                tokens.put(_DONE)

        asked_at = time.perf_counter()
        threading.Thread(target=answer_in_background, name="rag-answer", daemon=True).start()
        draft = ""
        evidence: tuple = ()  # (hits, seconds after the question) once retrieval has decided them
        try:
            yield "", chat_messages(conversation, (question, draft)), conversation, None
            while True:
                try:
                    token = tokens.get(timeout=ANSWER_IDLE_LIMIT_S)
                except queue.Empty:
                    outcome = {"error": f"超过 {ANSWER_IDLE_LIMIT_S} 秒没有收到回答，请稍后再试。"}
                    break
                if token is _DONE:
                    break
                if isinstance(token, tuple) and token[0] is _EVIDENCE:
                    evidence = token[1:]
                else:
                    draft += token
                yield "", chat_messages(conversation, (question, draft, *evidence)), conversation, None
        finally:
            gone.set()  # closed early by Gradio (the page left) or done: either way, no more tokens
        turn = Turn(question, outcome.get("answer"), outcome.get("error", ""))
        conversation = conversation + [turn]
        yield "", chat_messages(conversation), conversation, turn_details(turn)

    def new_conversation() -> tuple:
        return [], [], None

    def list_documents() -> list[list]:
        return [[meta.get("title", doc_id), meta.get("date", ""), meta.get("paragraphs", 0), doc_id]
                for doc_id, meta in indexed_documents(engine).items()]

    def document_choices(scope: list[str] | None) -> tuple:
        """The document pickers, after documents were added or removed."""
        documents = indexed_documents(engine)
        choices = [(f"{m.get('title', d)}（{m['date']}）" if m.get("date") else m.get("title", d), d)
                   for d, m in documents.items()]
        kept = [d for d in scope or [] if d in documents]
        return gr.Dropdown(choices=choices, value=kept), gr.Dropdown(choices=choices, value=[])

    def upload(files: list[str] | None, progress=gr.Progress()) -> tuple:
        """Save and index uploaded files, one after another."""
        paths = [Path(f) for f in files or []]
        lines = []
        for i, path in enumerate(paths):
            progress((i, len(paths)), desc=f"正在索引 {path.name}")
            try:
                lines.append(add_upload(engine, path, uploads_dir))
            finally:
                discard_cached(path)  # saved in uploads_dir (or refused): Gradio's copy must not linger
        return "<br>".join(map(html.escape, lines)), list_documents(), None

    def remove(doc_ids: list[str] | None) -> tuple:
        return html.escape(remove_documents(engine, doc_ids or [], uploads_dir)), list_documents()

    with gr.Blocks(title="政策文件问答", analytics_enabled=False) as app:
        conversation = gr.State([])
        gr.HTML('<div class="rag-header"><h1>政策文件问答</h1><p>回答只依据已索引的文件，'
                '每句话都标注来源段落；点击答案中的 [编号] 查看原文。</p></div>')
        with gr.Tabs():
            with gr.Tab("问答"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=4):
                        chatbot = gr.Chatbot(
                            label="对话", show_label=False, elem_classes="rag-chat",
                            height="calc(100vh - 320px)", min_height=360,
                            # The messages are HTML built in render.py, where every
                            # document and user text is escaped.
                            render_markdown=False, sanitize_html=False, latex_delimiters=[],
                            buttons=[], feedback_options=None,
                            placeholder="<div class='rag-placeholder'>请输入关于已索引文件的问题，"
                                        "例如：莱芜区如何整改砂石问题？</div>")
                        with gr.Row(equal_height=True):
                            message = gr.Textbox(label="问题", show_label=False, container=False, scale=8,
                                                 autofocus=True, max_lines=4,
                                                 placeholder="输入问题，按回车发送", elem_id="rag-question")
                            send = gr.Button("发送", variant="primary", scale=1, min_width=72)
                            new_chat = gr.Button("新对话", scale=1, min_width=72)
                    with gr.Column(scale=1, min_width=260):
                        scope = gr.Dropdown(label="检索范围", info="不选则检索全部文档", multiselect=True,
                                            allow_custom_value=True)
                        llm = gr.Radio(llm_choices, value=offered[0], label="生成方式", elem_classes="rag-llm")
                        top_k = gr.Slider(1, MAX_TOP_K, value=engine.config.k, step=1, label="检索段落数（top-k）")
            with gr.Tab("文档") as documents_tab:
                table = gr.Dataframe(headers=DOCUMENT_HEADERS, type="array", interactive=False, wrap=True,
                                     label="已索引的文档", elem_id="rag-documents")
                with gr.Row(equal_height=False):
                    files = gr.File(label=f"上传文档（{' '.join(SUPPORTED_SUFFIXES)}，"
                                          f"每个不超过 {MAX_UPLOAD_BYTES // (1024 * 1024)} MB）",
                                    file_count="multiple", file_types=list(SUPPORTED_SUFFIXES),
                                    elem_id="rag-upload")
                    with gr.Column():
                        to_remove = gr.Dropdown(label="删除文档", multiselect=True, allow_custom_value=True)
                        remove_button = gr.Button("删除所选文档", variant="stop")
                status = gr.HTML(label="结果", elem_classes="rag-status-box", elem_id="rag-document-status")
        details = gr.JSON(label="回答详情", visible=False)  # the last answer as data, for API clients

        ask_inputs = [message, scope, llm, top_k, conversation]
        ask_outputs = [message, chatbot, conversation, details]
        message.submit(ask, ask_inputs, ask_outputs, api_name="ask", concurrency_limit=ASK_CONCURRENCY,
                       show_progress="hidden")
        send.click(ask, ask_inputs, ask_outputs, api_visibility="private",
                   concurrency_limit=ASK_CONCURRENCY, show_progress="hidden")
        new_chat.click(new_conversation, None, [chatbot, conversation, details], api_name="new_conversation")
        chatbot.clear(new_conversation, None, [chatbot, conversation, details], api_visibility="private")

        # Whenever the list of documents may have changed, the pickers follow it.
        for event in (app.load(list_documents, None, table, api_name="documents"),
                      documents_tab.select(list_documents, None, table, api_visibility="private"),
                      files.upload(upload, files, [status, table, files], api_name="upload"),
                      remove_button.click(remove, to_remove, [status, table], api_name="remove")):
            event.then(document_choices, scope, [scope, to_remove], api_visibility="private")
    app.queue(default_concurrency_limit=1)  # uploads and removals one at a time, like index writes
    return app
