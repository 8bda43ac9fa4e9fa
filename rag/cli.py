"""The `rag` command line."""
from __future__ import annotations

import argparse
import json
import os
import sys

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
    _common(p)

    p = sub.add_parser("search", help="find the paragraphs that answer a question",
                       description="Hybrid search (dense + BM25). Builds the index first if there is none.")
    p.add_argument("query", metavar="QUESTION")
    p.add_argument("--k", type=int, help="how many paragraphs (default 5)")
    p.add_argument("--doc", action="append", metavar="ID", help="only this document (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    _common(p)
    return parser


def load_config(args: argparse.Namespace) -> Config:
    fields = ("index", "corpus", "embedding", "k")
    overrides = {f: getattr(args, f) for f in fields if getattr(args, f, None) is not None}
    return Config.load(args.config, overrides)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    parser = build_parser()
    args = parser.parse_args(argv)
    from embeddings import EmbeddingError

    from .documents import DocumentError
    from .engine import Engine
    from .indexer import NoDocuments
    from .retriever import QueryError
    from .store import IndexStateError

    try:
        engine = Engine(load_config(args))
        return COMMANDS[args.command](engine, args)
    except (QueryError, ConfigError) as exc:
        print(f"rag: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (IndexStateError, NoDocuments, DocumentError, EmbeddingError) as exc:
        print(f"rag: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def cmd_index(engine, args) -> int:
    report = engine.index(args.paths or None, rebuild=args.rebuild)
    for path, reason in report.skipped:
        print(f"rag: warning: skipped {reason}", file=sys.stderr)
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
        print(f"[{h.rank}] {h.doc_title} · {p.section_path or '(正文)'} · 第{p.number}段  score={h.score:.4f}")
        print(f"    {p.text}\n")
    return 0


COMMANDS = {"index": cmd_index, "search": cmd_search}

if __name__ == "__main__":
    sys.exit(main())
