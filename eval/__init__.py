"""Evaluation of retrieval and answers against a question set (``rag eval``).

    questions.py  read the JSONL question set
    metrics.py    per-question metrics and their aggregation (overall and by type)
    configs.py    the named configurations compared
    pipelines.py  their indexes, and the naive LangChain reference pipeline
    harness.py    run a question set through one or more configurations, with a cache
    report.py     metrics.json, report.md and the PNG charts
    cli.py        the ``rag eval`` subcommand
"""
