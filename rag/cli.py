"""The `rag` command line."""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

from eval.cli import add_parser as add_eval_parser
from eval.cli import run as run_eval

from .config import Config, ConfigError

EXIT_USAGE = 2  # bad input: empty query, bad flag, unusable config
EXIT_FAILURE = 1  # could not do the work: damaged index, no documents, model missing


def _common(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("configuration (flags > RAG_* environment > config file > defaults)")
    g.add_argument("--config", metavar="FILE", help="TOML config file (default: ./rag.toml if present)")
    g.add_argument("--index", metavar="DIR", help="index folder (default .rag/index; env RAG_INDEX)")
    g.add_argument("--corpus", metavar="DIR", help="documents indexed by default (default data/corpus)")
    g.add_argument("--embedding", metavar="BACKEND",
                   help="e5-small-q4 (default) or sentence-transformers:<model id or folder>")
    g.add_argument("--store", choices=("files", "milvus"),
                   help="index store: files (FAISS + BM25 in --index, default) or milvus (--milvus-uri)")
    g.add_argument("--milvus-uri", dest="milvus_uri", metavar="URI",
                   help="a .db path (milvus-lite, embedded) or http://host:19530 (a Milvus server)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rag",
        description="Answer questions about Chinese policy documents, citing the source paragraphs.",
        epilog="Example: rag search \"莱芜区如何整改砂石问题\" --k 5")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("index", help="index documents (incremental: only changed files are re-read)",
                       description="Index .txt/.md/.docx/.html/.pdf files. Added, changed and removed "
                                   "files are applied; unchanged paragraphs are not re-embedded.")
    p.add_argument("paths", nargs="*", metavar="PATH", help="files or folders (default: the corpus)")
    p.add_argument("--rebuild", action="store_true", help="discard the index and build it anew")
    p.add_argument("--repair", action="store_true",
                   help="rebuild a damaged index from the documents it records (their paths), keeping "
                        "what is intact; never reads the default corpus")
    p.add_argument("--workers", type=int, metavar="N", help="embed in N processes (default 1)")
    p.add_argument("--ray", dest="ray_address", metavar="ADDRESS",
                   help="embed on a Ray cluster (auto, ray://head:10001; local = Ray in this process)")
    _common(p)

    p = sub.add_parser("remove", help="remove documents from the index",
                       description="Remove documents from the index by id (see `rag documents`) or by the "
                                   "path they were indexed from. The files themselves are not touched.")
    p.add_argument("targets", nargs="+", metavar="DOC_ID|PATH")
    _common(p)

    p = sub.add_parser("documents", help="list the indexed documents",
                       description="The indexed documents: id, paragraphs, chunks, content hash, path.")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    _common(p)

    p = sub.add_parser("search", help="find the paragraphs that answer a question",
                       description="Hybrid search (dense + BM25). Builds the index first if there is none.")
    p.add_argument("query", metavar="QUESTION")
    p.add_argument("--k", type=int, help="how many paragraphs (default 5)")
    p.add_argument("--doc", action="append", metavar="ID", help="only this document (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    _common(p)

    for name, helptext in (("ask", "answer a question with cited paragraphs"),
                           ("chat", "a conversation in the terminal (follow-up questions work)")):
        p = sub.add_parser(name, help=helptext, description=helptext + ". The LLM is chosen by --llm: "
                           "local (bundled Qwen2.5-1.5B, default), gguf:<path>, openai (--base-url, "
                           "--model, OPENAI_API_KEY) or extractive (no LLM, quotes the documents).")
        if name == "ask":
            p.add_argument("query", metavar="QUESTION")
            p.add_argument("--history", metavar="FILE",
                           help='earlier turns as JSON: [["question", "answer"], ...]')
            p.add_argument("--json", action="store_true", help="print the whole answer as JSON")
        p.add_argument("--llm", metavar="GENERATOR", help="local | gguf:<path> | openai | extractive")
        p.add_argument("--base-url", dest="base_url", metavar="URL", help="endpoint for --llm openai")
        p.add_argument("--model", metavar="NAME", help="model name for --llm openai")
        p.add_argument("--k", type=int, help="how many paragraphs to retrieve (default 5)")
        p.add_argument("--doc", action="append", metavar="ID", help="only this document (repeatable)")
        _common(p)

    for name, port, helptext, description in (
            ("serve", 8000, "the OpenAI-compatible API (answers with their sources) and the web interface",
             "Serve /v1/chat/completions, /v1/models, /v1/search and /v1/documents, with the web "
             "interface at /ui. Builds the index first if there is none; uploads are saved next to "
             "the corpus, in uploads/."),
            ("ui", 7860, "the web interface: chat with cited answers, upload documents",
             "The same server as `rag serve` (the API included), on port 7860 by default; open "
             "the printed address. Never a public share link.")):
        p = sub.add_parser(name, help=helptext, description=description)
        p.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only; any other "
                            "address needs --api-key)")
        p.add_argument("--port", type=int, default=port, help=f"port (default {port})")
        p.add_argument("--api-key", dest="api_key", metavar="KEY",
                       help="require Authorization: Bearer KEY on the API and KEY as the UI's "
                            "password (env RAG_API_KEY)")
        p.add_argument("--llm", metavar="GENERATOR",
                       help="default generator: local | gguf:<path> | openai | extractive")
        p.add_argument("--generators", metavar="LIST",
                       help="comma-separated generators offered to clients (default: --llm and extractive)")
        p.add_argument("--base-url", dest="base_url", metavar="URL", help="endpoint for the openai generator")
        p.add_argument("--model", metavar="NAME", help="model name for the openai generator")
        _common(p)

    add_eval_parser(sub)
    return parser


def load_config(args: argparse.Namespace) -> Config:
    fields = ("index", "corpus", "embedding", "k", "llm", "base_url", "model", "api_key", "generators",
              "store", "milvus_uri", "workers", "ray_address")
    overrides = {f: getattr(args, f) for f in fields if getattr(args, f, None) is not None}
    return Config.load(args.config, overrides)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    undecodable = [a for a in argv if not _is_text(a)]
    if undecodable:  # the OS hands over bytes; invalid UTF-8 arrives as lone surrogates
        shown = undecodable[0].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        print(f"rag: error: an argument is not valid UTF-8 text: {_printable(shown)!r}; "
              "check the terminal's encoding (e.g. LANG=C.UTF-8)", file=sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(argv)
    if args.command == "eval":  # builds its own configurations and indexes
        return run_eval(args)
    from embeddings import EmbeddingError

    from .documents import DocumentError
    from .engine import Engine
    from .generators import GeneratorError
    from .indexer import NoDocuments
    from .retriever import QueryError
    from .store import IndexStateError

    try:
        engine = Engine(load_config(args))
        if getattr(args, "k", None) is not None:  # before any work: a usage error, exit 2
            from .retriever import require_k
            require_k(args.k, engine.config)
        return COMMANDS[args.command](engine, args)
    except (QueryError, ConfigError) as exc:
        print(f"rag: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (IndexStateError, NoDocuments, DocumentError, EmbeddingError, GeneratorError) as exc:
        print(f"rag: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def cmd_index(engine, args) -> int:
    if args.repair:
        if args.paths or args.rebuild:
            raise ConfigError("--repair takes no PATH and no --rebuild: it re-reads the documents the index records")
        from .indexer import repair_index
        report = repair_index(engine.store, engine.embedder, engine.config)
    else:
        report = engine.index(args.paths or None, rebuild=args.rebuild)
    for path, reason in report.skipped:
        print(f"rag: warning: skipped {reason}", file=sys.stderr)
    for warning in report.warnings:
        print(f"rag: warning: {warning}", file=sys.stderr)
    print(report.summary())
    return 0


def cmd_search(engine, args) -> int:
    hits = engine.search(args.query, args.k, args.doc)
    if args.json:
        print(json.dumps([h.to_dict() for h in hits], ensure_ascii=False, indent=2))
        return 0
    if not hits:
        print("没有找到相关段落。")
    for h in hits:
        p = h.paragraph
        print(_printable(f"[{h.rank}] {h.doc_title} · {p.section_path or '(正文)'} · 第{p.number}段  "
                         f"score={h.score:.4f}"))
        print(f"    {_printable(p.text)}\n")
    return 0


def _answerer(engine):
    answerer = engine.answerer()
    if answerer.notice:
        print(f"rag: {answerer.notice}", file=sys.stderr)
    return answerer


def _read_history(path: str | None) -> list[tuple[str, str]]:
    if not path:
        return []
    try:
        turns = json.loads(open(path, encoding="utf-8").read())
        return [(t["question"], t["answer"]) if isinstance(t, dict) else (str(t[0]), str(t[1])) for t in turns]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise ConfigError(f"--history {path}: expected a JSON list of [question, answer] pairs ({exc})") from None


def print_answer(answer) -> None:
    """The checked answer and its sources, after the streamed draft."""
    if answer.standalone_question != answer.question:
        print(f"（按问题理解：{answer.standalone_question}）")
    print(answer.answer)
    if answer.citations:
        print("\n来源：")
    for c in answer.citations:
        p = c.hit.paragraph
        print(_printable(f"[{c.n}] {c.hit.doc_title} · {p.section_path or '(正文)'} · 第{p.number}段"))
        print(f"    {_printable(p.text)}")
    if answer.refused and answer.retrieved:
        print("\n可能相关：")
        for h in answer.retrieved[:3]:
            print(_printable(f"- {h.doc_title} · 第{h.paragraph.number}段：{h.paragraph.text[:80]}…"))


def _evidence_to(stream):
    """The paragraphs the answer will be drawn from, shown before the model's first token
    (the checked answer's own sources follow it on stdout)."""
    def show(hits) -> None:
        stream.write("检索到的段落：\n")
        for h in hits:
            heading = h.paragraph.section[-1][:40] if h.paragraph.section else "(正文)"  # the nearest heading
            stream.write(_printable(f"  · {h.doc_title} · {heading} · 第{h.paragraph.number}段") + "\n")
        stream.write("生成中：")
        stream.flush()
    return show


def _stream_to(stream):
    def write(token: str) -> None:
        stream.write(token)
        stream.flush()
    return write


def cmd_ask(engine, args) -> int:
    history = _read_history(args.history)
    answerer = _answerer(engine)
    if args.json:
        answer = answerer.ask(args.query, history, args.k, args.doc)
        print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
        return 0
    # The draft streams to stderr as it is generated; stdout gets the checked answer.
    answer = answerer.ask(args.query, history, args.k, args.doc, on_token=_stream_to(sys.stderr),
                          on_evidence=_evidence_to(sys.stderr))
    print("\n", file=sys.stderr)
    print_answer(answer)
    return 0


def cmd_chat(engine, args) -> int:
    from .generators import GeneratorError
    from .retriever import QueryError
    answerer = _answerer(engine)
    history: list[tuple[str, str]] = []
    print("输入问题后回车；输入 exit 或按 Ctrl-D 退出。")
    while True:
        try:
            question = input("\n问> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if question in {"exit", "quit", "退出"}:
            return 0
        if not question:
            continue
        try:
            answer = answerer.ask(question, history, args.k, args.doc, on_token=_stream_to(sys.stderr),
                                  on_evidence=_evidence_to(sys.stderr))
        except (QueryError, GeneratorError) as exc:
            print(f"rag: {exc}", file=sys.stderr)
            continue
        print(file=sys.stderr)
        print_answer(answer)
        history.append((question, answer.answer))
        history = history[-engine.config.max_history_turns:]


def cmd_serve(engine, args) -> int:
    """`rag serve`, and `rag ui` (the same server on another default port)."""
    from .server import serve
    try:
        serve(engine, args.host, args.port, announce=lambda line: print(line, flush=True))
    except OSError as exc:  # the port is taken, or the address is not this machine's
        print(f"rag: cannot serve on {args.host}:{args.port} ({exc})", file=sys.stderr)
        return EXIT_FAILURE
    return 0


COMMANDS = {"index": cmd_index, "search": cmd_search, "ask": cmd_ask, "chat": cmd_chat,
            "serve": cmd_serve, "ui": cmd_serve}


def cmd_remove(engine, args) -> int:
    from .indexer import NotIndexed, remove_documents
    try:
        removed = remove_documents(engine.store, args.targets, engine.config)
    except NotIndexed as exc:
        print(f"rag: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"removed {len(removed)}: {', '.join(removed)}")
    return 0


def cmd_documents(engine, args) -> int:
    documents = engine.store.manifest().documents
    rows = [{"doc_id": d, "title": m.get("title", ""), "paragraphs": m.get("paragraphs"),
             "chunks": m.get("chunks"), "content_hash": m.get("content_hash", ""), "path": m.get("path", "")}
            for d, m in documents.items()]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    for r in rows:
        print(_printable(f"{r['doc_id']}\t{r['paragraphs']} paragraphs\t{r['chunks']} chunks\t"
                         f"{r['content_hash'][:12]}\t{r['path']}\t{r['title']}"))
    print(f"{len(rows)} documents")
    return 0


COMMANDS.update(remove=cmd_remove, documents=cmd_documents)

# Terminal control sequences (CSI, OSC), other control characters and bidirectional
# overrides: document text must not clear, retitle or reorder the user's terminal.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?")
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _printable(text: str) -> str:
    """Document text made safe for a terminal (tabs and newlines kept)."""
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


def _is_text(arg: str) -> bool:
    try:
        arg.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


if __name__ == "__main__":
    sys.exit(main())
