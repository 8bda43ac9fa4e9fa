"""HTML for the chat: answers with citation links, source cards, refusals and errors.

Questions, document titles, paragraphs and generated text are all untrusted (documents
come from anywhere, and the model repeats them): every piece of it goes through
``html.escape``, so the only markup on the page is the markup written here.
"""
from __future__ import annotations

import html
import re

from rag.answer import Answer
from rag.retriever import Hit

_CITE = re.compile(r"\[(\d+)\]")
GENERATOR_NAMES = {"local": "本地模型", "extractive": "摘录模式"}


def card_id(turn: int, n: int) -> str:
    """The element id of source [n] of the turn-th answer; [n] links point to it."""
    return f"src-{turn}-{n}"


def _lines(text: str) -> str:
    return "<br>".join(html.escape(line) for line in text.strip().split("\n"))


def highlight(text: str, sentences: list[str]) -> str:
    """The paragraph, escaped, with each supporting sentence wrapped in <mark>."""
    spans = []
    for sentence in sentences:
        start = text.find(sentence) if sentence else -1
        if start >= 0:
            spans.append((start, start + len(sentence)))
    out, pos = [], 0
    for start, end in sorted(spans):
        start = max(start, pos)  # overlapping sentences are marked once
        if end <= start:
            continue
        out.append(html.escape(text[pos:start]))
        out.append(f"<mark>{html.escape(text[start:end])}</mark>")
        pos = end
    out.append(html.escape(text[pos:]))
    return "".join(out)


def source_card(hit: Hit, label: str = "", supporting: list[str] | None = None,
                element_id: str = "") -> str:
    """A collapsible card: where the paragraph comes from, then its text."""
    p = hit.paragraph
    where = " · ".join(x for x in (hit.doc_date, f"第{p.number}段") if x)
    id_attr = f' id="{element_id}"' if element_id else ""
    number = f'<span class="rag-card-n">{html.escape(label)}</span>' if label else ""
    # Headings of official documents run long: the path is one line until the card opens.
    section = (f'<span class="rag-card-section" title="{html.escape(p.section_path)}">'
               f'{html.escape(p.section_path)}</span>' if p.section_path else "")
    return (f'<details class="rag-card"{id_attr}><summary>{number}'
            f'<span class="rag-card-title">《{html.escape(hit.doc_title)}》</span>'
            f'<span class="rag-card-where">{html.escape(where)}</span>{section}</summary>'
            f'<div class="rag-card-text">{highlight(p.text, supporting or [])}</div></details>')


def _linked_answer(text: str, turn: int, numbers: set[int]) -> str:
    """Escaped answer text whose [n] markers link to the turn's source cards."""
    def link(m: re.Match) -> str:
        n = int(m.group(1))
        if n not in numbers:
            return m.group(0)
        return f'<a class="rag-cite" href="#{card_id(turn, n)}" data-card="{card_id(turn, n)}">[{n}]</a>'
    return _CITE.sub(link, _lines(text))


def copy_text(answer: Answer) -> str:
    """What the copy button puts on the clipboard: the answer, then its sources."""
    if not answer.citations:
        return answer.answer
    sources = [" ".join(x for x in (f"[{c.n}]", f"《{c.hit.doc_title}》", c.hit.paragraph.section_path,
                                    f"第{c.hit.paragraph.number}段") if x)
               for c in answer.citations]
    return answer.answer + "\n\n来源：\n" + "\n".join(sources)


def answer_html(turn: int, answer: Answer) -> str:
    parts = ['<div class="rag-answer">']
    if answer.standalone_question != answer.question:
        parts.append(f'<div class="rag-rewrite">按问题理解：{html.escape(answer.standalone_question)}</div>')
    if answer.notice:
        parts.append(f'<div class="rag-notice">{html.escape(answer.notice)}</div>')
    if answer.refused:
        parts.append(f'<div class="rag-text rag-refused">{_lines(answer.answer)}</div>')
        if answer.retrieved:
            parts.append('<div class="rag-sources-title">可能相关</div>')
            parts.extend(source_card(hit) for hit in answer.retrieved[:3])
    else:
        numbers = {c.n for c in answer.citations}
        parts.append(f'<div class="rag-text">{_linked_answer(answer.answer, turn, numbers)}</div>')
        if answer.citations:
            parts.append('<div class="rag-sources-title">来源（点击展开原文）</div>')
            parts.extend(source_card(c.hit, f"[{c.n}]", c.supporting, card_id(turn, c.n))
                         for c in answer.citations)
    generator = GENERATOR_NAMES.get(answer.generator, answer.generator)
    seconds = answer.timings.get("total_s", 0.0)
    parts.append(f'<div class="rag-footer"><span>{html.escape(generator)} · 用时 {seconds:.1f} 秒</span>'
                 f'<button class="rag-copy" type="button" data-copy="{html.escape(copy_text(answer))}">'
                 f'复制回答</button></div></div>')
    return "".join(parts)


def draft_html(draft: str, evidence: list[Hit] | None = None, evidence_s: float | None = None) -> str:
    """The answer while it streams: the model's raw text, before its citations are checked,
    and, as soon as retrieval has decided them (before the first token), the paragraphs
    it is drawn from; ``evidence_s`` (seconds from the question) is kept on the element
    for the browser test's measurement."""
    status = "正在生成回答…" if draft.strip() or evidence else "正在检索文档…"
    parts = [f'<div class="rag-answer rag-draft"><div class="rag-status">{status}</div>'
             f'<div class="rag-text">{_lines(draft)}</div>']
    if evidence:
        seconds = f' data-evidence-s="{evidence_s:.3f}"' if evidence_s is not None else ""
        parts.append(f'<div class="rag-sources-title rag-evidence"{seconds}>检索到的段落（回答核实后标出引用）</div>')
        parts.extend(source_card(hit) for hit in evidence)
    return "".join(parts) + "</div>"


def error_html(message: str) -> str:
    return f'<div class="rag-answer rag-error"><strong>无法回答：</strong>{html.escape(message)}</div>'


def question_html(question: str) -> str:
    return _lines(question)
