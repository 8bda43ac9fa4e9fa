"""The sentence-transformers backend with a real offline model."""
from __future__ import annotations

import numpy as np
import pytest

from embeddings import EmbeddingError, get_embedder
from rag import Config, Engine


def test_embeds_offline_and_plugs_into_langchain(minilm_path):
    emb = get_embedder(f"sentence-transformers:{minilm_path}")
    assert emb.dim == 384
    vectors = emb.encode(["flood control headquarters", "sand and gravel mining"])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    q = np.array(emb.embed_query("who runs flood control?"))
    assert q @ vectors[0] > q @ vectors[1]
    assert len(emb.embed_documents(["a", "b"])) == 2


def test_index_and_search_with_it(tmp_path, minilm_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "en.txt").write_text("Flood report\nThe flood headquarters moved to the emergency bureau.\n"
                                 "Sand mining checkpoints were set up at seven places.\n", encoding="utf-8")
    engine = Engine(Config(index=str(tmp_path / "idx"), corpus=str(docs),
                           embedding=f"sentence-transformers:{minilm_path}"))
    engine.index(progress=False)
    assert engine.manifest().embedding == f"sentence-transformers:{minilm_path}"
    assert "checkpoints" in engine.search("where were sand mining checks?", k=1)[0].paragraph.text


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(EmbeddingError, match="cannot load"):
        get_embedder(f"sentence-transformers:{tmp_path / 'no-such-model'}")
    with pytest.raises(EmbeddingError, match="unknown embedding backend"):
        get_embedder("word2vec")
