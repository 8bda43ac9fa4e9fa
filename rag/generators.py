"""Answer generators, one interface, chosen by a string in ``rag.factory`` (``--llm`` / config / ``RAG_LLM``):

    local        Qwen2.5-Coder-1.5B-Instruct Q4_K_M, bundled, served in-process by xllamacpp
    gguf:<path>  a GGUF file you bring, served the same way
    openai       any OpenAI-compatible endpoint (--base-url, --model, OPENAI_API_KEY)
    extractive   no LLM: the best retrieved sentences, quoted and cited

Every LLM path goes through LangChain's ``ChatOpenAI`` and the prompts in ``prompts.py``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

from .config import Config
from .claims import Clause, parse_clauses
from .evidence import Passage
from .tokenize import issuer_place
from .prompts import (ANSWER_PROMPT, EXTRACTIVE_LABEL, HISTORY_TURN, PASSAGE, QUOTES_LABEL,
                      RESTATE_PROMPT, REWRITE_PROMPT, UNVERIFIED_LABEL)

MAX_ANSWER_TOKENS = 100  # a 1-2 sentence summary; decoding runs ~25 tokens/s on two cores
MAX_REWRITE_TOKENS = 48
MAX_RESTATE_TOKENS = 40  # one sentence; ~1 s on two cores


class GeneratorError(RuntimeError):
    """The generator cannot answer: model missing, endpoint down. The message says why."""


class Generator(ABC):
    name: str  # reported in answers: local, gguf:<file>, openai:<model>, extractive
    uses_llm = True

    @abstractmethod
    def generate(self, question: str, passages: list[Passage]) -> Iterator[str]:
        """Yield the answer as it is produced (tokens for an LLM)."""

    def clauses(self, text: str, passages: list[Passage]) -> list[Clause]:
        """What the generated ``text`` claims: one ``Clause`` per sentence, with the
        passages it draws on. An LLM says that only through its [n] marks, so they are
        read from its text; a generator that knows (extractive) says it directly. Every
        generator's clauses then go through the same verifier (``verify.py``)."""
        return parse_clauses(text, labels=(EXTRACTIVE_LABEL, UNVERIFIED_LABEL), quotes_after=(QUOTES_LABEL,))

    def rewrite(self, question: str, history: list[tuple[str, str]]) -> str | None:
        """A standalone version of a follow-up question, or None to use the rule."""
        return None

    def restate(self, question: str) -> str | None:
        """The question as a sentence in the documents' formal wording, to search with
        (None: no model to write it)."""
        return None


LABEL_CHARS = 10  # of a passage's heading, or of its title when no place is found in it
_HEADING_NUMBER = re.compile(r"^\s*([(（]?[一二三四五六七八九十\d]+[)）.、．]\s*)*(针对|关于)?[“\"]?")


def format_passages(passages: list[Passage]) -> str:
    """Numbered passages, each labelled with the place its document speaks for (莱芜区) or
    else the start of its title, and the first words of its own heading: labels tell the
    model which document and topic a sentence is from, but every prompt token costs
    ~20 ms before the first answer token on two cores."""
    blocks = []
    for p in passages:
        source = issuer_place(p.hit.doc_title) or p.hit.doc_title[:LABEL_CHARS]
        heading = _HEADING_NUMBER.sub("", p.hit.paragraph.section[-1]) if p.hit.paragraph.section else ""
        blocks.append(PASSAGE.format(n=p.n, source=source, section=heading[:LABEL_CHARS], text=p.text))
    return "\n".join(blocks)


class ChatGenerator(Generator):
    """An OpenAI-compatible chat model through LangChain."""

    def __init__(self, name: str, base_url: str, model: str, api_key: str, timeout: float,
                 cache_dir: str = ""):
        from langchain_openai import ChatOpenAI
        import httpx
        self.name = name
        self.base_url = base_url
        self.replies = ReplyCache(Path(cache_dir), name) if cache_dir else None
        self.replayed = 0  # replies taken from the cache since the counter was last read
        # Bounded waits: connecting must fail fast when the endpoint is down; a running
        # answer may take longer on a slow CPU. No retries, so a failure is reported once.
        self.llm = ChatOpenAI(base_url=base_url, model=model, api_key=api_key, temperature=0, seed=0,
                              max_retries=0, timeout=httpx.Timeout(timeout, connect=5.0),
                              max_tokens=MAX_ANSWER_TOKENS)

    def _stream(self, prompt, max_tokens: int, **values) -> Iterator[str]:
        if self.replies is None:
            yield from self._call(prompt, max_tokens, values)
            return
        key = self.replies.key(prompt.format_messages(**values), max_tokens)
        reply = self.replies.get(key)
        if reply is not None:
            self.replayed += 1
            yield reply
            return
        pieces = []
        for piece in self._call(prompt, max_tokens, values):
            pieces.append(piece)
            yield piece
        self.replies.put(key, "".join(pieces))

    def _call(self, prompt, max_tokens: int, values: dict) -> Iterator[str]:
        import openai
        try:
            for chunk in (prompt | self.llm.bind(max_tokens=max_tokens)).stream(values):
                if chunk.content:
                    yield chunk.content
        except openai.APIConnectionError as exc:
            raise GeneratorError(f"cannot reach the LLM endpoint {self.base_url} ({exc.__cause__ or exc}); "
                                 "check --base-url, or use --llm extractive") from None
        except openai.APIStatusError as exc:
            raise GeneratorError(f"the LLM endpoint {self.base_url} answered {exc.status_code}: "
                                 f"{exc.message}") from None

    def generate(self, question, passages):
        yield from self._stream(ANSWER_PROMPT, MAX_ANSWER_TOKENS, question=question,
                                passages=format_passages(passages))

    def rewrite(self, question, history):
        turns = "\n".join(HISTORY_TURN.format(question=q, answer=a) for q, a in history)
        text = "".join(self._stream(REWRITE_PROMPT, MAX_REWRITE_TOKENS, history=turns, question=question))
        text = text.strip().splitlines()[0].strip() if text.strip() else ""
        return text.removeprefix("改写后的问题：").strip("“”\"' ") or None

    def restate(self, question):
        text = "".join(self._stream(RESTATE_PROMPT, MAX_RESTATE_TOKENS, question=question)).strip()
        return text.splitlines()[0].strip() if text else None


class ReplyCache:
    """The LLM's replies on disk, one JSON file per request hash (model name, messages,
    token limit): written whole through a temporary file, so a crash leaves no half reply."""

    def __init__(self, folder: Path, model: str):
        self.folder, self.model = folder, model
        folder.mkdir(parents=True, exist_ok=True)

    def key(self, messages, max_tokens: int) -> str:
        request = [self.model, max_tokens, [(m.type, m.content) for m in messages]]
        return hashlib.sha256(json.dumps(request, ensure_ascii=False).encode()).hexdigest()

    def get(self, key: str) -> str | None:
        try:
            return json.loads((self.folder / f"{key}.json").read_text(encoding="utf-8"))["reply"]
        except (OSError, ValueError, KeyError):
            return None

    def put(self, key: str, reply: str) -> None:
        path = self.folder / f"{key}.json"
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"reply": reply}, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)


class ExtractiveGenerator(Generator):
    """No LLM: the selected sentences themselves, each cited, in paragraph order, so a
    一是…二是… enumeration keeps its shape."""

    name = "extractive"
    uses_llm = False

    def __init__(self, label: str = EXTRACTIVE_LABEL):
        self.label = label  # what the quotes are said to be, on the first line

    def generate(self, question, passages):
        yield self.label + "\n"
        for p in passages:
            yield "".join(f"{s}[{p.n}]" for s in p.sentences) + "\n"

    def clauses(self, text, passages):
        """The quoted sentences themselves, each with its passage, one line per passage."""
        return [Clause(self.label, (), 0, "label")] + [
            Clause(s, (p.n,), line, "quote") for line, p in enumerate(passages, start=1) for s in p.sentences]


def get_generator(config: Config) -> tuple[Generator, str]:
    """The configured generator and a notice for the user ('' when there is none).
    Kept for existing callers; backends are chosen in ``rag.factory.make_generator``."""
    from .factory import make_generator
    return make_generator(config)
