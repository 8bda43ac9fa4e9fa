"""Load on `rag serve`: concurrent conversations against the real server on loopback.

Each conversation is one of the follow-up items of eval/questions.jsonl: its first
question, then its follow-up with the conversation's own history in ``messages`` (half of
the conversations stream). Checked for every conversation: no request lost (every one
ends in a 200, after at most MAX_RETRIES polite retries on 429), no history mixed (the
answer names the follow-up it was asked, and its standalone reading shares more with its
own conversation's two questions than with any other conversation's), and every answer's
sources are the ones its content cites. Reported: latency p50/p95 per
generator, the 429 count, retries and failures.

    .venv/bin/python bench/bench_load.py                  # 20 extractive, then 5 local conversations
    .venv/bin/python bench/bench_load.py --local 0        # extractive only (no LLM)
    .venv/bin/python bench/bench_load.py --mixed          # then all 25 at once as well

The server runs in this process (uvicorn in a thread, 127.0.0.1 only), over the sample
corpus indexed with the real embedder in .rag/index.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time

from common import REPO, percentile, report

import httpx

from rag import Config, Engine
from rag.server import ServerThread, create_app


def follow_ups() -> list[tuple[str, str]]:
    """(first question, follow-up) of the question set's one-turn follow-up items."""
    items = [json.loads(line) for line in (REPO / "eval" / "questions.jsonl").read_text(encoding="utf-8").splitlines()
             if line.strip()]
    return [(i["history"][0][0], i["question"]) for i in items if len(i.get("history") or []) == 1]


CONVERSATIONS = follow_ups()
REQUEST_TIMEOUT_S = 600  # a local answer waits its turn behind the others: bounded, not forever
MAX_RETRIES = 3  # after a 429, wait Retry-After and try again, at most this often


def ask(client: httpx.Client, model: str, messages: list[dict], stream: bool, stats: dict) -> dict:
    """One chat request (retrying after 429); the parsed completion, or the last chunk's
    fields with the streamed content joined."""
    for attempt in range(MAX_RETRIES + 1):
        started = time.perf_counter()
        body = {"model": model, "messages": messages, "stream": stream}
        if stream:
            with client.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code == 200:
                    content, last = "", None
                    for line in response.iter_lines():
                        if line.startswith("data: ") and line != "data: [DONE]":
                            chunk = json.loads(line[6:])
                            if "error" in chunk:
                                raise RuntimeError(chunk["error"]["message"])
                            if chunk["choices"]:
                                content += chunk["choices"][0]["delta"].get("content") or ""
                                last = chunk
                    result = {"content": content, "sources": last["sources"], "rag": last["rag"]}
                else:
                    response.read()
        else:
            response = client.post("/v1/chat/completions", json=body)
            if response.status_code == 200:
                data = response.json()
                result = {"content": data["choices"][0]["message"]["content"], "sources": data["sources"],
                          "rag": data["rag"]}
        took = time.perf_counter() - started
        if response.status_code == 200:
            stats["latency"].setdefault(model, []).append(took)
            print(f"{model} {'stream' if stream else 'plain'} {took:.1f} s", file=sys.stderr, flush=True)
            return result
        if response.status_code == 429 and attempt < MAX_RETRIES:
            stats["429"] += 1
            print(f"{model} 429, retry after {response.headers.get('retry-after')} s", file=sys.stderr, flush=True)
            time.sleep(float(response.headers.get("retry-after", "1")))
            continue
        raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
    raise AssertionError("unreachable")


def cited(content: str) -> set[int]:
    return {int(n) for n in re.findall(r"\[(\d+)\]", content.split("**来源**")[0])}


def bigrams(text: str) -> set[str]:
    return {text[i:i + 2] for i in range(len(text) - 1)}


def converse(url: str, model: str, conversation: tuple[str, str], others: set[tuple[str, str]], stream: bool,
             stats: dict, start: threading.Barrier) -> None:
    """Both turns of one conversation; ``others`` are the other conversations running."""
    first_question, follow_up = conversation
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S) as client:
        try:
            start.wait()
            messages = [{"role": "user", "content": first_question}]
            first = ask(client, model, messages, stream, stats)
            messages += [{"role": "assistant", "content": first["content"]},
                         {"role": "user", "content": follow_up}]
            second = ask(client, model, messages, stream, stats)
        except Exception as exc:  # a lost request: reported, not raised
            stats["failed"].append(f"{model} {first_question}: {exc}")
            return
    standalone = bigrams(second["rag"]["standalone_question"])
    own = len(standalone & bigrams(first_question + follow_up))
    closer = [o for o in others if o != conversation and len(standalone & bigrams(o[0] + o[1])) > own]
    if second["rag"]["question"] != follow_up or closer:
        stats["mixed"].append(f"{model}: {first_question} / {follow_up} → read as "
                              f"{second['rag']['standalone_question']!r}")
    for answer in (first, second):
        if cited(answer["content"]) != {s["n"] for s in answer["sources"]}:
            stats["sources_mismatch"] += 1
    stats["conversations"] += 1


def run_phase(url: str, plan: list[tuple[str, int]]) -> dict:
    """Conversations per model, all started at once; their outcome."""
    stats = {"latency": {}, "429": 0, "failed": [], "mixed": [], "sources_mismatch": 0, "conversations": 0}
    jobs = [(model, CONVERSATIONS[i % len(CONVERSATIONS)], i % 2 == 1) for model, n in plan for i in range(n)]
    running = {conversation for _, conversation, _ in jobs}
    start = threading.Barrier(len(jobs))
    threads = [threading.Thread(target=converse, args=(url, model, conversation, running, stream, stats, start))
               for model, conversation, stream in jobs]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(REQUEST_TIMEOUT_S * 2 * (MAX_RETRIES + 1))
    return {
        "conversations": {m: n for m, n in plan}, "completed": stats["conversations"],
        "requests": sum(len(v) for v in stats["latency"].values()), "http_429": stats["429"],
        "lost": len(stats["failed"]), "histories_mixed": len(stats["mixed"]),
        "sources_not_matching_content": stats["sources_mismatch"],
        "wall_s": round(time.perf_counter() - began, 1),
        "latency_s": {m: {"p50": round(percentile(v, 0.5), 2), "p95": round(percentile(v, 0.95), 2),
                          "max": round(max(v), 2)} for m, v in stats["latency"].items()},
        "problems": stats["failed"] + stats["mixed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--extractive", type=int, default=20, help="concurrent extractive conversations")
    parser.add_argument("--local", type=int, default=5, help="concurrent local-LLM conversations")
    parser.add_argument("--queue-wait", type=float, default=None, help="queue_wait_s (default: the config's)")
    parser.add_argument("--mixed", action="store_true", help="then both kinds of conversation at once")
    args = parser.parse_args()
    config = Config(corpus=str(REPO / "data" / "corpus"), index=str(REPO / ".rag" / "index"), llm="extractive")
    if args.queue_wait is not None:
        config = config.replace(queue_wait_s=args.queue_wait)
    engine = Engine(config)
    engine.ensure_index(progress=False)
    generators = ["extractive"] + (["local"] if args.local else [])
    server = ServerThread(create_app(engine, REPO / ".rag" / "bench-uploads", generators, with_ui=False),
                          host="127.0.0.1").start()
    try:
        t = time.perf_counter()
        if args.local:  # start the local model before measuring: it is started once per server
            ask(httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT_S), "rag-local",
                [{"role": "user", "content": CONVERSATIONS[0][0]}], False, {"latency": {}, "429": 0})
            print(f"local model ready after {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
        warm_s = time.perf_counter() - t
        phases = {}
        if args.extractive:
            phases["extractive"] = run_phase(server.url, [("rag-extractive", args.extractive)])
            print(json.dumps(phases["extractive"], ensure_ascii=False), file=sys.stderr, flush=True)
        if args.local:
            phases["local"] = run_phase(server.url, [("rag-local", args.local)])
            print(json.dumps(phases["local"], ensure_ascii=False), file=sys.stderr, flush=True)
        if args.mixed:
            phases["mixed"] = run_phase(server.url, [("rag-extractive", args.extractive),
                                                     ("rag-local", args.local)])
    finally:
        server.stop()
    report("load", {"machine_load_average": round(os.getloadavg()[0], 1), "queue_wait_s": config.queue_wait_s, "max_queue": config.max_queue,
                    "local_llm_start_and_first_answer_s": round(warm_s, 1), "phases": phases})


if __name__ == "__main__":
    main()
