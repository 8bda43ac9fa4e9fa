"""Turns for answering: a bounded, first-come-first-served queue per resource.

Two cores run one LLM call at a time well and two badly, so answers that call an LLM take
turns on one slot; answers without one (extractive; searches) share the two cores. The
API server and the UI both answer through the same queues, so a page and an API client
cannot together run more than that. A request that would wait longer than the
configured limit is turned away (HTTP 429 with Retry-After) rather than left hanging, and
one whose client went away gives up its place.

    queues = AnswerQueues(config)
    with queues.for_generator(generator).turn(cancelled):   # Busy / Cancelled
        answer = answerer.ask(...)
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from contextlib import contextmanager
from collections.abc import Iterator

from .config import Config

LLM_SLOTS = 1  # llama.cpp serves one sequence at a time; a second would only halve both
CPU_SLOTS = 2  # answers without an LLM: embedding the question and ranking, one per core
_POLL_S = 0.2  # how often a waiting request checks whether its client is still there
_MEAN_WEIGHT = 0.3  # weight of the latest answer in the running mean of answer times


class Busy(RuntimeError):
    """No turn within the wait limit; ``retry_after`` is a fair guess in whole seconds."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class Cancelled(RuntimeError):
    """The client went away while waiting or being answered."""


class TurnQueue:
    def __init__(self, name: str, slots: int, max_waiting: int, max_wait_s: float):
        self.name, self.slots, self.max_waiting, self.max_wait_s = name, slots, max_waiting, max_wait_s
        self._cond = threading.Condition()
        self._waiting: deque[object] = deque()
        self._busy = 0
        self._mean_s = 0.0  # running mean of how long a turn takes (0: nothing measured yet)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _expected_wait(self, ahead: int) -> float:
        """Seconds until a request with ``ahead`` requests in front of it gets a turn."""
        turns = max(0, self._busy + ahead - self.slots + 1)
        return turns * self._mean_s / self.slots

    def _busy_error(self, why: str) -> Busy:
        wait = self._expected_wait(len(self._waiting)) or self.max_wait_s
        return Busy(f"the server is busy ({why}); retry in about {math.ceil(wait)} s",
                    max(1, math.ceil(wait)))

    @contextmanager
    def turn(self, cancelled: threading.Event | None = None) -> Iterator[None]:
        """Wait for a turn (FIFO), hold it for the block; Busy or Cancelled instead."""
        ticket = object()
        with self._cond:
            if len(self._waiting) >= self.max_waiting:
                raise self._busy_error(f"{len(self._waiting)} requests are waiting for the {self.name} queue")
            if self._expected_wait(len(self._waiting)) > self.max_wait_s:
                raise self._busy_error(f"the wait would exceed {self.max_wait_s:g} s")
            self._waiting.append(ticket)
            deadline = time.monotonic() + self.max_wait_s
            try:
                while not (self._waiting[0] is ticket and self._busy < self.slots):
                    if cancelled is not None and cancelled.is_set():
                        raise Cancelled("the client went away while waiting")
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise self._busy_error(f"no turn within {self.max_wait_s:g} s")
                    self._cond.wait(min(remaining, _POLL_S))
                self._busy += 1
            finally:
                self._waiting.remove(ticket)
                self._cond.notify_all()
        started = time.monotonic()
        try:
            yield
        finally:
            took = time.monotonic() - started
            with self._cond:
                self._busy -= 1
                self._mean_s = took if not self._mean_s else (
                    _MEAN_WEIGHT * took + (1 - _MEAN_WEIGHT) * self._mean_s)
                self._cond.notify_all()


class AnswerQueues:
    """The server's two queues: answers that call an LLM, and work that does not."""

    def __init__(self, config: Config):
        self.llm = TurnQueue("LLM", LLM_SLOTS, config.max_queue, config.queue_wait_s)
        self.cpu = TurnQueue("search", CPU_SLOTS, config.max_queue, config.queue_wait_s)

    def for_generator(self, generator) -> TurnQueue:
        return self.llm if generator.uses_llm else self.cpu
