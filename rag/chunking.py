"""Paragraphs → chunks small enough for the embedding model.

What is embedded and BM25-indexed for a chunk is its text behind a context header
(document title + section path); what is cited is always the whole paragraph.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from .documents import Document, Paragraph, document_label

_SENTENCE_END = re.compile(r"(?<=[。！？；!?;])")
HEADER_HEADING_CHARS = 80  # a long heading is cut in the header so the text keeps the window


@dataclass(frozen=True)
class Chunk:
    paragraph_id: str  # "<doc_id>#<paragraph number>"
    doc_id: str
    text: str  # the piece of the paragraph
    indexed_text: str  # header + text: what the embedder and BM25 see

    def content_hash(self, embedding: str) -> str:
        """Key of the vector cache: same backend and same indexed text, same vector."""
        return hashlib.sha256(f"{embedding}\n{self.indexed_text}".encode()).hexdigest()[:32]

    def to_dict(self) -> dict:
        return {"paragraph_id": self.paragraph_id, "doc_id": self.doc_id, "text": self.text,
                "indexed_text": self.indexed_text}


def split_sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text) if s]


def split_text(text: str, size: int, overlap: int) -> list[str]:
    """Split at sentence ends into pieces of at most ``size`` characters.

    Consecutive pieces share up to ``overlap`` characters of whole trailing sentences, so
    a fact spanning a boundary is whole in at least one piece. A single sentence longer
    than ``size`` is cut at commas, then hard-cut as the last resort.
    """
    if len(text) <= size:
        return [text]
    units: list[str] = []
    for sentence in split_sentences(text):
        while len(sentence) > size:
            cut = max(sentence.rfind(c, 0, size) for c in ",，、")
            cut = cut + 1 if cut > size // 3 else size
            units.append(sentence[:cut])
            sentence = sentence[cut:]
        if sentence:
            units.append(sentence)
    pieces: list[str] = []
    current: list[str] = []
    for unit in units:
        if current and sum(map(len, current)) + len(unit) > size:
            pieces.append("".join(current))
            tail: list[str] = []
            for prev in reversed(current):  # carry whole sentences as the overlap
                if sum(map(len, tail)) + len(prev) > overlap:
                    break
                tail.insert(0, prev)
            current = tail if sum(map(len, tail)) + len(unit) <= size else []
        current.append(unit)
    if current:
        pieces.append("".join(current))
    return pieces


def context_header(doc: Document, paragraph: Paragraph) -> str:
    """Document title and the paragraph's own (deepest) heading.

    The whole section path measured no better on the question set and, repeated in front
    of every small chunk, cost most of the embedding time (eval/RESULTS.md).
    """
    heading = paragraph.section[-1] if paragraph.section else ""
    if len(heading) > HEADER_HEADING_CHARS:
        heading = heading[:HEADER_HEADING_CHARS] + "…"
    return " > ".join(filter(None, [document_label(doc.title, doc.place), heading]))


def chunk_document(doc: Document, size: int, overlap: int, with_header: bool = True) -> list[Chunk]:
    chunks = []
    for p in doc.paragraphs:
        header = context_header(doc, p) if with_header else ""
        for piece in split_text(p.text, size, overlap):
            indexed = f"{header}\n{piece}" if header else piece
            chunks.append(Chunk(p.id, doc.doc_id, piece, indexed))
    return chunks
