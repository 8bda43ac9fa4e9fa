"""The Gradio app: a chat whose answers cite their source paragraphs, and the documents.

    app = build_app(engine, uploads_dir=Path("data/uploads"), default_llm="local")
    url = serve(app, host="127.0.0.1", port=7860)  # returns; the server runs in the background

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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from embeddings import EmbeddingError
from rag.answer import Answer, Answerer
from rag.config import Config
from rag.documents import SUPPORTED_SUFFIXES
from rag.engine import Engine
from rag.generators import Generator, GeneratorError, get_generator
from rag.indexer import NoDocuments
from rag.retriever import QueryError
from rag.store import IndexStateError

from .assets import CSS, JS, THEME
from .render import answer_html, draft_html, error_html, question_html
from .uploads import MAX_UPLOAD_BYTES, add_upload, remove_documents

log = logging.getLogger(__name__)

LLM_CHOICES = [("本地模型（Qwen2.5 1.5B）", "local"), ("摘录模式（不用大模型）", "extractive"),
               ("OpenAI 兼容接口", "openai")]
# Failures a user can act on, shown in the chat with what went wrong.
FAILURES = [(GeneratorError, "生成模型不可用"), (QueryError, "无法检索这个问题"),
            (IndexStateError, "索引不可用"), (NoDocuments, "没有可检索的文档"),
            (EmbeddingError, "向量模型不可用")]
# The longest wait for the next token (or the end) of an answer. Starting the local
# model, a queue of other users' answers on the single llama.cpp slot, and a slow
# endpoint (request_timeout per call) all fit in it.
ANSWER_IDLE_LIMIT_S = 300
ASK_CONCURRENCY = 4  # questions answered at once; the rest wait in Gradio's queue
DOCUMENT_HEADERS = ["标题", "日期", "段落数", "文档编号"]
_DONE = object()  # end of an answer's token stream


@dataclass
class Turn:
    """One question of a conversation and its answer, or why there is none."""
    question: str
    answer: Answer | None = None
    error: str = ""


def chat_messages(conversation: list[Turn], pending: tuple[str, str] | None = None) -> list[dict]:
    """The chatbot's messages; ``pending`` is a (question, draft) still being answered."""
    messages = []
    for turn_no, turn in enumerate(conversation, start=1):
        reply = answer_html(turn_no, turn.answer) if turn.answer else error_html(turn.error)
        messages += [{"role": "user", "content": question_html(turn.question)},
                     {"role": "assistant", "content": reply}]
    if pending:
        question, draft = pending
        messages += [{"role": "user", "content": question_html(question)},
                     {"role": "assistant", "content": draft_html(draft)}]
    return messages


def turn_details(turn: Turn) -> dict:
    """The last turn as data, for API clients (the page shows it as HTML)."""
    return turn.answer.to_dict() if turn.answer else {"error": turn.error}


class Generators:
    """One generator per setting, built on first use: the local one starts an in-process
    llama.cpp server, which must happen once, not per question."""

    def __init__(self, config: Config):
        self.config = config
        self._built: dict[tuple[str, str, str], tuple[Generator, str]] = {}
        self._lock = threading.Lock()

    def get(self, llm: str, base_url: str = "", model: str = "") -> tuple[Generator, str]:
        """(generator, notice for the user); raises GeneratorError."""
        key = (llm, base_url.strip(), model.strip()) if llm == "openai" else (llm, "", "")
        with self._lock:
            if key not in self._built:
                self._built[key] = get_generator(self.config.replace(llm=key[0], base_url=key[1],
                                                                     model=key[2]))
            return self._built[key]


def _explain(exc: Exception) -> str:
    for kind, meaning in FAILURES:
        if isinstance(exc, kind):
            return f"{meaning}。{exc}"
    log.exception("answering failed")
    return f"内部错误（{type(exc).__name__}: {exc}），详情见服务器日志。"


def indexed_documents(engine: Engine) -> dict[str, dict]:
    return engine.store.manifest().documents if engine.store.exists() else {}


def build_app(engine: Engine, uploads_dir: Path, default_llm: str = "local") -> gr.Blocks:
    """The app over ``engine``'s index; uploads are saved into ``uploads_dir``."""
    generators = Generators(engine.config)
    uploads_dir = Path(uploads_dir)
    llm_choices = list(LLM_CHOICES)
    if default_llm not in {value for _, value in llm_choices}:  # e.g. gguf:<path> from the CLI
        llm_choices.append((f"自选模型 {Path(default_llm.split(':', 1)[-1]).name}", default_llm))

    def ask(message: str, scope: list[str] | None, llm: str, base_url: str, model: str, top_k: float,
            conversation: list[Turn]) -> Iterator[tuple]:
        """Answer a question in this session's conversation, streaming the draft."""
        question = (message or "").strip()
        if not question:
            yield "", chat_messages(conversation), conversation, None
            return
        history = [(t.question, t.answer.answer) for t in conversation if t.answer]
        tokens: queue.Queue = queue.Queue()
        outcome: dict = {}

        def answer_in_background() -> None:
            # Answerer.ask calls on_token synchronously; running it here lets this
            # generator hand each token to Gradio as soon as it exists.
            try:
                generator, notice = generators.get(llm, base_url, model)
                outcome["answer"] = Answerer(engine, generator, notice).ask(
                    question, history, int(top_k), scope or None, on_token=tokens.put)
            except Exception as exc:  # every failure becomes a message in the chat
                outcome["error"] = _explain(exc)
            finally:
                tokens.put(_DONE)

        threading.Thread(target=answer_in_background, name="rag-answer", daemon=True).start()
        draft = ""
        yield "", chat_messages(conversation, (question, draft)), conversation, None
        while True:
            try:
                token = tokens.get(timeout=ANSWER_IDLE_LIMIT_S)
            except queue.Empty:
                outcome = {"error": f"超过 {ANSWER_IDLE_LIMIT_S} 秒没有收到回答，请稍后再试。"}
                break
            if token is _DONE:
                break
            draft += token
            yield "", chat_messages(conversation, (question, draft)), conversation, None
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
            lines.append(add_upload(engine, path, uploads_dir))
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
                        llm = gr.Radio(llm_choices, value=default_llm, label="生成方式", elem_classes="rag-llm")
                        with gr.Group(visible=default_llm == "openai") as endpoint:
                            base_url = gr.Textbox(label="接口地址（base URL）", value=engine.config.base_url,
                                                  placeholder="http://127.0.0.1:8080/v1")
                            model = gr.Textbox(label="模型名称", value=engine.config.model)
                        top_k = gr.Slider(1, 10, value=engine.config.k, step=1, label="检索段落数（top-k）")
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

        ask_inputs = [message, scope, llm, base_url, model, top_k, conversation]
        ask_outputs = [message, chatbot, conversation, details]
        message.submit(ask, ask_inputs, ask_outputs, api_name="ask", concurrency_limit=ASK_CONCURRENCY,
                       show_progress="hidden")
        send.click(ask, ask_inputs, ask_outputs, api_visibility="private",
                   concurrency_limit=ASK_CONCURRENCY, show_progress="hidden")
        new_chat.click(new_conversation, None, [chatbot, conversation, details], api_name="new_conversation")
        chatbot.clear(new_conversation, None, [chatbot, conversation, details], api_visibility="private")
        llm.change(lambda choice: gr.Group(visible=choice == "openai"), llm, endpoint,
                   api_visibility="private")

        # Whenever the list of documents may have changed, the pickers follow it.
        for event in (app.load(list_documents, None, table, api_name="documents"),
                      documents_tab.select(list_documents, None, table, api_visibility="private"),
                      files.upload(upload, files, [status, table, files], api_name="upload"),
                      remove_button.click(remove, to_remove, [status, table], api_name="remove")):
            event.then(document_choices, scope, [scope, to_remove], api_visibility="private")
    app.queue(default_concurrency_limit=1)  # uploads and removals one at a time, like index writes
    return app


def serve(app: gr.Blocks, host: str = "127.0.0.1", port: int | None = 7860) -> str:
    """Start the server in the background (never a public share link); its local URL.

    ``port=None`` takes the first free port from 7860 on.
    """
    _, url, _ = app.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=True,
                           quiet=True, theme=THEME, css=CSS, js=JS, max_file_size=MAX_UPLOAD_BYTES,
                           footer_links=["api", "settings"])
    return url


def launch(engine: Engine, host: str = "127.0.0.1", port: int = 7860) -> None:
    """`rag ui`: index the corpus if there is no index yet, then serve until Ctrl-C."""
    engine.ensure_index()
    uploads_dir = Path(engine.config.corpus).parent / "uploads"
    app = build_app(engine, uploads_dir, engine.config.llm)
    url = serve(app, host, port)
    print(f"政策文件问答：{url}  （上传的文件保存在 {uploads_dir}；按 Ctrl-C 停止）", flush=True)
    app.block_thread()
