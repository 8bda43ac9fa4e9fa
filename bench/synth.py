"""A synthetic library of 10⁴–10⁶ paragraphs made from real ones, for the scale benchmarks.

Generated on demand, never committed. How it is made:

* **Text.** The real paragraphs of both corpora (``data/corpus``: 2 reports;
  ``eval/corpus-dev``: 13 documents; 845 paragraphs, 2,238 chunks) are recombined and
  perturbed: a synthetic document takes a real document's title with its place replaced by
  another place of the list below and a year between 2015 and 2026; each of its paragraphs
  is a real paragraph, or (30 %) the first half of one real paragraph's sentences followed by
  the second half of another's; then every figure is redrawn (same number of digits) and
  every listed place name is replaced by a random one. So word frequencies, paragraph
  lengths and the long tail of figures and place names look like a library of reports
  from many places and years, rather than 500 copies of the same 845 paragraphs.
* **Chunks** come from the real chunker (``rag.chunking.chunk_document``), with headers.
* **Vectors** (embedding 10⁶ paragraphs would take days on 2 cores): each chunk of a
  synthetic paragraph takes the real embedded vector of the chunk of its source paragraph
  at the same place (for a recombined paragraph, the mean of its two sources' paragraph
  vectors), plus Gaussian noise (σ = 0.02 per dimension: cosine ≈ 0.9 to the source),
  renormalised. The real vectors are embedded once with the configured model and cached
  in ``bench/results/synth-base-<model>.npz``.
* **BM25 tokens**: jieba cuts text into blocks at every non-Han character before it
  segments, so a chunk's tokens are the concatenation of its sentences' tokens;
  ``SentenceTokenizer`` memoises them per sentence, which gives exactly ``rag.tokenize``'s
  tokens at a fraction of the cost when the same perturbed sentence recurs.
"""
from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rag.chunking import chunk_document, split_sentences  # noqa: E402
from rag.documents import Document, Paragraph, find_files, load_document  # noqa: E402
from rag.store import DocumentEntry  # noqa: E402

SOURCES = [REPO / "data" / "corpus", REPO / "eval" / "corpus-dev"]
PLACES = ["济南市", "青岛市", "淄博市", "烟台市", "潍坊市", "济宁市", "泰安市", "威海市", "日照市", "临沂市",
          "德州市", "聊城市", "滨州市", "菏泽市", "枣庄市", "东营市", "莱芜区", "钢城区", "历城区", "长清区",
          "章丘区", "济阳区", "平阴县", "商河县", "贵州省", "海南省", "四川省", "陕西省", "内蒙古自治区",
          "山东省", "河南省", "河北省", "江苏省", "浙江省", "安徽省", "福建省", "湖北省", "湖南省"]
_PLACE = re.compile("|".join(map(re.escape, sorted(PLACES, key=len, reverse=True))))
_NUMBER = re.compile(r"\d+")
_YEAR = re.compile(r"(19|20)\d\d")
NOISE = 0.02
PARAGRAPHS_PER_DOC = 40
RECOMBINE = 0.3


@dataclass
class RealParagraph:
    doc_title: str
    section: tuple[str, ...]
    text: str
    chunk_vectors: np.ndarray  # the real chunks' vectors, in order
    mean: np.ndarray  # their normalised mean


def _normalise(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def load_real(embedder, chunk_size=120, overlap=30, header=True, cache_dir: Path | None = None
              ) -> list[RealParagraph]:
    """The real paragraphs with their chunks' vectors (embedded once, then cached)."""
    docs = [load_document(p, p.name) for p in find_files(SOURCES)]
    chunk_lists = [chunk_document(d, chunk_size, overlap, header) for d in docs]
    texts = [c.indexed_text for cl in chunk_lists for c in cl]
    cache_dir = cache_dir or REPO / "bench" / "results"
    key = hashlib.sha256(("\n".join(texts) + embedder.spec).encode()).hexdigest()[:12]
    path = cache_dir / f"synth-base-{re.sub(r'[^A-Za-z0-9]+', '-', embedder.spec)}-{key}.npz"
    if path.exists():
        vectors = np.load(path)["vectors"]
    else:
        vectors = np.concatenate([embedder.encode(texts[i:i + 32]) for i in range(0, len(texts), 32)])
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, vectors=vectors)
    out, row = [], 0
    for doc, chunks in zip(docs, chunk_lists):
        by_paragraph: dict[str, list[int]] = {}
        for c in chunks:
            by_paragraph.setdefault(c.paragraph_id, []).append(row)
            row += 1
        for p in doc.paragraphs:
            rows = by_paragraph.get(p.id)
            if not rows:
                continue
            vecs = vectors[rows].astype(np.float32)
            out.append(RealParagraph(doc.title, p.section, p.text, vecs, _normalise(vecs.mean(axis=0))))
    return out


def _perturb(text: str, rng: np.random.Generator) -> str:
    text = _PLACE.sub(lambda m: PLACES[rng.integers(len(PLACES))], text)

    def number(m: re.Match) -> str:
        digits = len(m.group())
        if digits == 4 and _YEAR.fullmatch(m.group()):
            return str(rng.integers(2015, 2027))
        low = 10 ** (digits - 1) if digits > 1 else 0
        return str(rng.integers(low, 10 ** digits))
    return _NUMBER.sub(number, text)


def synth_documents(real: list[RealParagraph], n_paragraphs: int, seed: int = 0, dim: int | None = None,
                    chunk_size=120, overlap=30, header=True):
    """Yields DocumentEntry objects until ``n_paragraphs`` paragraphs have been made."""
    rng = np.random.default_rng(seed)
    dim = dim or real[0].mean.shape[0]
    made, doc_no = 0, 0
    titles = sorted({r.doc_title for r in real})
    while made < n_paragraphs:
        count = min(PARAGRAPHS_PER_DOC, n_paragraphs - made)
        doc_id = f"synth-{doc_no:07d}.txt"
        title = _perturb(titles[rng.integers(len(titles))], rng)
        paragraphs, sources = [], []
        offset = 0
        for number in range(1, count + 1):
            a = real[rng.integers(len(real))]
            if rng.random() < RECOMBINE:
                b = real[rng.integers(len(real))]
                sa, sb = split_sentences(a.text), split_sentences(b.text)
                text = "".join(sa[:max(1, len(sa) // 2)] + sb[len(sb) // 2:])
                source = (None, _normalise(a.mean + b.mean))
            else:
                text, source = a.text, (a.chunk_vectors, a.mean)
            text = _perturb(text, rng)
            paragraphs.append(Paragraph(doc_id, number, text, a.section, offset, offset + len(text)))
            sources.append(source)
            offset += len(text) + 1
        doc = Document(doc_id, f"/synthetic/{doc_id}", title,
                       hashlib.sha256(f"{seed}:{doc_no}".encode()).hexdigest(), paragraphs)
        chunks = chunk_document(doc, chunk_size, overlap, header)
        place: dict[str, int] = {}
        base = np.empty((len(chunks), dim), dtype=np.float32)
        for i, c in enumerate(chunks):
            number = int(c.paragraph_id.rsplit("#", 1)[1])
            vectors, mean = sources[number - 1]
            k = place.get(c.paragraph_id, 0)
            place[c.paragraph_id] = k + 1
            base[i] = vectors[k] if vectors is not None and k < len(vectors) else mean
        vectors = _normalise(base + rng.normal(0.0, NOISE, base.shape).astype(np.float32))
        yield DocumentEntry(doc.meta_dict(), paragraphs, chunks, vectors.astype(np.float32))
        made += count
        doc_no += 1


class SentenceTokenizer:
    """``rag.tokenize.tokenize`` memoised per sentence (exact: see the module docstring)."""

    _PIECES = re.compile(r"[^\n。！？；!?;]+[\n。！？；!?;]*")

    def __init__(self, limit: int = 2_000_000):
        from rag.tokenize import tokenize
        self._tokenize, self._memo, self._limit = tokenize, {}, limit

    def __call__(self, text: str) -> list[str]:
        out: list[str] = []
        for piece in self._PIECES.findall(text):
            tokens = self._memo.get(piece)
            if tokens is None:
                tokens = self._tokenize(piece)
                if len(self._memo) < self._limit:
                    self._memo[piece] = tokens
            out.extend(tokens)
        return out
