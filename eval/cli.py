"""``rag eval``: measure retrieval (and answers) on a question set, comparing configurations.

rag/cli.py registers the subcommand with ``add_parser`` and dispatches to ``run``. Only
light modules are imported here: rag/cli.py builds its parser before any real work, and
``rag --help`` should not wait for the models' libraries to load.
"""
from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

from .configs import CONFIGS

EXIT_USAGE = 2  # as in rag/cli.py
EXIT_FAILURE = 1
RETRIEVAL_K = 10


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval", help="measure retrieval and answers on a question set",
        description="Run a JSONL question set (format: eval/README.md) through one or more named "
                    "configurations and write results.jsonl, metrics.json, report.md and PNG "
                    "charts. Results are cached per question in the output folder: a rerun "
                    "computes only what is missing or what a changed configuration affects.",
        epilog="Example: rag eval eval/questions.jsonl --retrieval-only "
               "--compare bm25,dense,hybrid,hybrid-noheader,naive")
    p.add_argument("questions", metavar="SET.jsonl", help="question set, one JSON object a line")
    p.add_argument("--retrieval-only", action="store_true",
                   help="only retrieve and compute hit@k/MRR (no answers, no LLM)")
    p.add_argument("--llm", metavar="BACKEND",
                   help="answer generator, as for rag ask: local | gguf:<path> | openai | extractive")
    p.add_argument("--k", type=int, metavar="N",
                   help=f"paragraphs retrieved per question (default {RETRIEVAL_K} with --retrieval-only; "
                        "for answers, the configuration's own k)")
    p.add_argument("--out", metavar="DIR",
                   help="output and cache folder (default eval/runs/<configs>-<mode>); "
                        "rerunning into the same folder resumes")
    p.add_argument("--compare", metavar="CONFIG,CONFIG…", default="hybrid",
                   help=f"named configurations to run: {', '.join(CONFIGS)} (default hybrid)")
    p.add_argument("--corpus", metavar="DIR",
                   help="documents to index and search (default: the folder the set names in its "
                        "header line {\"corpus\": …}, else the configured corpus, data/corpus)")
    return p


def _default_out(names: list[str], mode: str) -> Path:
    return Path("eval/runs") / re.sub(r"[^\w.+-]+", "_", f"{'+'.join(names)}-{mode}")


def run(args: argparse.Namespace) -> int:
    """Run ``rag eval``; return the exit code."""
    # Imported here, not at the top: see the module docstring.
    from embeddings import EmbeddingError
    from rag.config import Config, ConfigError
    from rag.documents import DocumentError
    from rag.generators import GeneratorError
    from rag.indexer import NoDocuments
    from rag.store import IndexStateError

    from .harness import EvalError, check_run, run_config
    from .questions import QuestionSetError, load_question_set
    from .report import tables, write_outputs

    names = list(dict.fromkeys(n.strip() for n in args.compare.split(",") if n.strip()))
    try:
        if not names:
            raise EvalError("--compare names no configuration")
        check_run(names, args.retrieval_only)
        if args.k is not None and args.k < 1:
            raise EvalError("--k must be at least 1")
        items, set_corpus = load_question_set(args.questions)
        overrides = {"corpus": args.corpus or (str(set_corpus) if set_corpus else None),
                     "k": args.k or (RETRIEVAL_K if args.retrieval_only else None),
                     "llm": None if args.retrieval_only else args.llm}
        base = Config.load(overrides=overrides)  # defaults < rag.toml < RAG_* < these flags
        mode = "retrieval" if args.retrieval_only else f"answers-{base.llm}"
        out = Path(args.out) if args.out else _default_out(names, mode)
        runs = [run_config(name, items, base, out, retrieval_only=args.retrieval_only) for name in names]
        meta = {"questions": args.questions, "command": shlex.join(["rag", *sys.argv[1:]]),
                "mode": "retrieval only" if args.retrieval_only else "answers", "k": base.k}
        paths = write_outputs(out, runs, items, meta)
    except (QuestionSetError, EvalError, ConfigError) as exc:
        print(f"rag eval: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (IndexStateError, NoDocuments, DocumentError, EmbeddingError, GeneratorError) as exc:
        print(f"rag eval: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(tables({run.name: run.metrics["overall"] for run in runs}))
    written = [out / name / "results.jsonl" for name in names] + paths
    print("wrote " + ", ".join(map(str, written)))
    return 0
