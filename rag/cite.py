"""The last stage: verified clauses → the answer's text with citation marks numbered 1..
in order of first use, and the citations, each with the sentences the answer draws on."""
from __future__ import annotations

from dataclasses import dataclass

from .evidence import Passage
from .retriever import Hit
from .verify import Verdict, supporting_sentences


@dataclass
class Citation:
    n: int
    hit: Hit
    supporting: list[str]  # sentences of the paragraph the answer draws on (highlighted)

    def to_dict(self) -> dict:
        p = self.hit.paragraph
        return {"n": self.n, "doc_id": p.doc_id, "doc_title": self.hit.doc_title, "doc_date": self.hit.doc_date,
                "section": p.section_path, "paragraph": p.number, "text": p.text,
                "supporting": self.supporting}


def cite(verdicts: list[Verdict], passages: list[Passage]) -> tuple[str, list[Citation]]:
    """The supported clauses, line by line; a run of clauses backed by the same passages
    is cited once, at its end."""
    by_n = {p.n: p for p in passages}
    kept = [v for v in verdicts if v.supported and v.clause.kind != "label"]
    order: dict[int, int] = {}  # passage number → citation number, in order of first use
    for v in kept:
        for n in v.passages:
            order.setdefault(n, len(order) + 1)
    lines: dict[int, str] = {v.clause.line: v.text for v in verdicts if v.clause.kind == "label"}
    highlights: dict[int, list[str]] = {}
    for i, v in enumerate(kept):
        run_continues = i + 1 < len(kept) and kept[i + 1].clause.line == v.clause.line \
            and kept[i + 1].passages == v.passages
        marks = "" if run_continues else "".join(f"[{order[n]}]" for n in v.passages)
        lines[v.clause.line] = lines.get(v.clause.line, "") + v.text + marks
        for n in v.passages:
            for s in supporting_sentences(v.text, by_n[n].hit.paragraph.text):
                if s not in highlights.setdefault(order[n], []):
                    highlights[order[n]].append(s)
    text = "\n".join(lines[k] for k in sorted(lines))
    citations = [Citation(new, by_n[old].hit, highlights[new]) for old, new in order.items()]
    return text, citations
