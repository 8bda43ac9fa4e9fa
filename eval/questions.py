"""The question-set format: JSONL, one question a line.

    {"id": "q001", "question": "莱芜区如何整改砂石问题", "answerable": true,
     "evidence": ["exact substring of the answering paragraph", ...], "doc": "file name|both|none",
     "answer_points": ["key fact", ...], "type": "how|fact|paraphrase|cross|followup|unanswerable",
     "history": [["earlier question", "earlier answer"], ...]}

``id``, ``question``, ``answerable``, ``evidence`` and ``type`` are required; ``doc``,
``answer_points`` and ``history`` are optional; unknown fields are ignored.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


class QuestionSetError(ValueError):
    """A question file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Item:
    id: str
    question: str
    answerable: bool
    evidence: tuple[str, ...]
    type: str
    doc: str = ""
    answer_points: tuple[str, ...] = ()
    history: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def _strings(value, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name!r} must be a list of strings")
    return tuple(value)


def parse_item(obj) -> Item:
    """One question from its decoded JSON object; ValueError says what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    missing = [k for k in ("id", "question", "answerable", "evidence", "type") if k not in obj]
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    for name in ("id", "question", "type"):
        if not isinstance(obj[name], str) or not obj[name].strip():
            raise ValueError(f"{name!r} must be a non-empty string")
    if not isinstance(obj["answerable"], bool):
        raise ValueError("'answerable' must be true or false")
    history = obj.get("history") or []
    if not isinstance(history, list) or not all(
            isinstance(turn, list) and len(turn) == 2 and all(isinstance(t, str) for t in turn)
            for turn in history):
        raise ValueError("'history' must be a list of [question, answer] pairs of strings")
    doc = obj.get("doc", "")
    if not isinstance(doc, str):
        raise ValueError("'doc' must be a string")
    return Item(id=obj["id"], question=obj["question"], answerable=obj["answerable"],
                evidence=_strings(obj["evidence"], "evidence"), type=obj["type"], doc=doc,
                answer_points=_strings(obj.get("answer_points", []), "answer_points"),
                history=tuple((q, a) for q, a in history))


def load_questions(path: str | Path) -> list[Item]:
    return load_question_set(path)[0]


def load_question_set(path: str | Path) -> tuple[list[Item], Path | None]:
    """The questions and the corpus folder the set names, if it does.

    A set may open with a header line ``{"corpus": "corpus-dev"}``: the folder of
    documents its questions are about, relative to the set's own folder, so that
    ``rag eval SET`` searches the right documents without flags.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise QuestionSetError(f"cannot read question file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise QuestionSetError(f"{path}: not UTF-8 text") from None
    items: list[Item] = []
    seen: set[str] = set()
    corpus: Path | None = None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not items and corpus is None and isinstance(obj, dict) and set(obj) == {"corpus"}:
                if not isinstance(obj["corpus"], str) or not obj["corpus"].strip():
                    raise ValueError("'corpus' must name a folder")
                corpus = path.parent / obj["corpus"]
                if not corpus.is_dir():
                    raise ValueError(f"the corpus folder {corpus} does not exist")
                continue
            item = parse_item(obj)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError too
            raise QuestionSetError(f"{path}, line {number}: {exc}") from None
        if item.id in seen:
            raise QuestionSetError(f"{path}, line {number}: duplicate id {item.id!r}")
        seen.add(item.id)
        items.append(item)
    if not items:
        raise QuestionSetError(f"{path}: no questions")
    return items, corpus
