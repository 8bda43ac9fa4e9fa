"""The named configurations ``rag eval --compare`` knows: one dict, in one place.

name → (pipeline, Config overrides applied to the base Config). "engine" is this project's
retriever; "naive" is the plain LangChain reference pipeline (eval/pipelines.py), which
reads only corpus, embedding and k from its Config. Kept free of imports so that
``rag --help`` stays fast.
"""

CONFIGS: dict[str, tuple[str, dict]] = {
    "bm25": ("engine", {"dense_weight": 0.0}),
    "dense": ("engine", {"bm25_weight": 0.0}),
    "hybrid": ("engine", {}),  # the default Config
    "hybrid-noheader": ("engine", {"context_header": False}),  # chunks indexed without title/section
    "hybrid-chunk400": ("engine", {"chunk_size": 400, "chunk_overlap": 60}),  # the size before tuning
    "naive": ("naive", {}),
}
