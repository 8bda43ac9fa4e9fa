"""Splitting long paragraphs at sentence ends, with overlap and context headers."""
from __future__ import annotations

from rag.chunking import chunk_document, split_sentences, split_text
from rag.documents import load_document

from .conftest import CORPUS, JINAN


def test_short_text_is_one_piece():
    assert split_text("一句话。", 400, 60) == ["一句话。"]


def test_split_at_sentence_ends_within_size():
    sentences = [f"第{i}句说明了整改措施的具体内容和完成时限。" for i in range(40)]
    text = "".join(sentences)
    pieces = split_text(text, 120, 40)
    assert all(len(p) <= 120 for p in pieces)
    assert all(p.endswith("。") for p in pieces)  # cut at sentence ends only
    for piece in pieces:  # pieces are made of whole sentences
        assert all(s in sentences for s in split_sentences(piece))
    # consecutive pieces overlap by whole sentences, and together they cover the text
    for a, b in zip(pieces, pieces[1:]):
        assert split_sentences(a)[-1] == split_sentences(b)[0]
    assert set(sentences) == {s for p in pieces for s in split_sentences(p)}


def test_overlong_sentence_is_cut_at_commas():
    text = ",".join(["部署整改任务"] * 50) + "。"
    pieces = split_text(text, 100, 20)
    assert all(len(p) <= 100 for p in pieces)
    assert "".join(pieces).replace(",", "") .startswith("部署整改任务")


def test_chunks_keep_their_paragraph_and_header():
    doc = load_document(CORPUS / JINAN)
    chunks = chunk_document(doc, 400, 60, with_header=True)
    longest = max(doc.paragraphs, key=lambda p: len(p.text))
    own = [c for c in chunks if c.paragraph_id == longest.id]
    assert len(longest.text) > 1400 and len(own) >= 4
    assert all(len(c.text) <= 400 for c in own)
    assert all(c.indexed_text.startswith(f"{doc.title} > {longest.section[-1][:80]}") for c in own)
    assert all(c.text in longest.text for c in own)
    bare = chunk_document(doc, 400, 60, with_header=False)
    assert all(c.indexed_text == c.text for c in bare)
