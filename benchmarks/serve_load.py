"""Serving under load: N concurrent streaming chat requests against the same N sent one after another.

    python benchmarks/serve_load.py --model runs/demo/chat                 # 50 requests, 3 rounds
    python benchmarks/serve_load.py --model runs/demo/chat --precision int8
    python benchmarks/serve_load.py --model runs/demo/chat --endpoint completions   # full-length answers

`fidan serve` runs as its own process on a free loopback port (what a user starts); this process is the
client (httpx, asyncio). Each round sends the same N questions (Turkish, with a seed each) twice, in turn:
one after another (each waits for the previous answer to end), then all at once. Throughput is completion
tokens (the server's own `usage` counts) per wall second; the figure is the median of the per-round
ratios. Every concurrent answer is checked against the sequential answer to the same request (same
seed): none may be missing, failed or another request's. Time to first token is measured by the client,
from sending a request to its first content chunk, for the sequential requests (batch 1) and under load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time

import httpx

QUESTIONS = ["Türkiye'nin başkenti neresidir?", "\"Kitap\" ne demektir?", "Bilim neden önemlidir?",
             "Bana bir selam ver.", "\"Deniz\" ne demektir?", "Nasılsın?", "\"Cumhuriyet\" ne demektir?",
             "Ankara hakkında bir şey söyle.", "\"Öğretmen\" ne demektir?", "En sevdiğin renk hangisi?"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ENDPOINT = "chat"


async def ask(client: httpx.AsyncClient, model: str, i: int, max_tokens: int) -> dict:
    payload = {"model": model, "max_tokens": max_tokens, "temperature": 0.8, "seed": i, "stream": True,
               "stream_options": {"include_usage": True}}
    if ENDPOINT == "chat":
        payload["messages"] = [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]
    else:  # a text to continue: the answer runs to max_tokens unless the end-of-text token comes
        payload["prompt"] = QUESTIONS[i % len(QUESTIONS)].rstrip("?") + " ve"
    t0 = time.perf_counter()
    first, text, usage = None, "", None
    path = "/v1/chat/completions" if ENDPOINT == "chat" else "/v1/completions"
    async with client.stream("POST", path, json=payload) as r:
        if r.status_code != 200:
            return {"ok": False, "status": r.status_code}
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                return {"ok": False, "status": "error in stream"}
            if chunk.get("usage"):
                usage = chunk["usage"]
            for c in chunk["choices"]:
                piece = c["delta"].get("content") if "delta" in c else c.get("text")
                if piece:
                    first = first or time.perf_counter()
                    text += piece
    return {"ok": usage is not None, "text": text, "tokens": usage["completion_tokens"] if usage else 0,
            "ttft": (first or time.perf_counter()) - t0}


async def sequential(base: str, model: str, n: int, max_tokens: int) -> tuple[float, list[dict]]:
    async with httpx.AsyncClient(base_url=base, timeout=600) as client:
        t0 = time.perf_counter()
        out = [await ask(client, model, i, max_tokens) for i in range(n)]
        return time.perf_counter() - t0, out


async def concurrent(base: str, model: str, n: int, max_tokens: int) -> tuple[float, list[dict]]:
    limits = httpx.Limits(max_connections=n + 4, max_keepalive_connections=n + 4)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as client:
        t0 = time.perf_counter()
        out = await asyncio.gather(*(ask(client, model, i, max_tokens) for i in range(n)))
        return time.perf_counter() - t0, list(out)


def _common(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def compare(alone: list[str], together: list[str]) -> tuple[list[int], int]:
    """Characters shared before each differing answer parts from its own request's answer alone, and how
    many answers are closer to another request's answer than to their own (mixed up).

    A row's logits in a batch of 16 are not bit for bit those of the row alone (the matrix products round
    differently), so a sampled draw that falls within rounding of the boundary between two tokens can
    take the neighbour; from there the two answers go their own ways. That is not a mix-up.
    """
    differ, mixed = [], 0
    for i, got in enumerate(together):
        if got == alone[i]:
            continue
        own = _common(got, alone[i])
        differ.append(own)
        mixed += any(j != i and (got == other or _common(got, other) > own) for j, other in enumerate(alone))
    return differ, mixed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--endpoint", choices=["chat", "completions"], default="chat",
                        help="chat questions (a tuned model's answers end at </RESP>) or texts to continue")
    args = parser.parse_args()
    global ENDPOINT
    ENDPOINT = args.endpoint
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "fidan", "serve", "--model", args.model, "--port", str(port), "--device", "cpu",
           "--max-batch", str(args.max_batch), "--max-waiting", str(args.requests), "--precision", args.precision,
           "--threads", str(args.threads), "--name", "bench"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    try:
        for _ in range(600):
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise SystemExit("the server did not start")
        from fidan.runtime.environment import cpu_model

        print(f"machine: {cpu_model()}, {os.cpu_count()} cores; server: {' '.join(cmd[2:])}")
        print(f"{args.requests} streaming {args.endpoint} requests, up to {args.max_tokens} tokens each, temperature 0.8, "
              f"a seed each; {args.rounds} rounds after a warm-up, sequential then concurrent in each")
        asyncio.run(concurrent(base, "bench", min(args.requests, 8), args.max_tokens))  # warm-up
        ratios, seq_tps, con_tps, ttft_seq, ttft_con = [], [], [], [], []
        for r in range(args.rounds):
            t_seq, seq = asyncio.run(sequential(base, "bench", args.requests, args.max_tokens))
            t_con, con = asyncio.run(concurrent(base, "bench", args.requests, args.max_tokens))
            failed = sum(not x["ok"] for x in seq + con)
            differ, mixed = compare([x.get("text", "") for x in seq], [x.get("text", "") for x in con])
            if failed or mixed:
                raise SystemExit(f"round {r + 1}: {failed} requests failed, {mixed} answers look like another "
                                 f"request's")
            a = sum(x["tokens"] for x in seq) / t_seq
            b = sum(x["tokens"] for x in con) / t_con
            seq_tps.append(a)
            con_tps.append(b)
            ratios.append(b / a)
            ttft_seq += [x["ttft"] for x in seq]
            ttft_con += [x["ttft"] for x in con]
            print(f"round {r + 1}: sequential {a:6.0f} tok/s ({t_seq:5.1f} s) | concurrent {b:6.0f} tok/s "
                  f"({t_con:5.1f} s) | {b / a:.2f}x | all {args.requests} complete, none another's; "
                  f"{args.requests - len(differ)} identical to the request alone"
                  + (f", {len(differ)} diverging after {', '.join(map(str, differ))} characters" if differ else ""))
        print(f"median: sequential {statistics.median(seq_tps):.0f} tok/s, concurrent "
              f"{statistics.median(con_tps):.0f} tok/s, concurrent ÷ sequential {statistics.median(ratios):.2f}x "
              f"(range {min(ratios):.2f}-{max(ratios):.2f})")
        print(f"time to first token: alone median {statistics.median(ttft_seq) * 1e3:.1f} ms; "
              f"with {args.requests} at once median {statistics.median(ttft_con) * 1e3:.0f} ms, "
              f"p90 {statistics.quantiles(ttft_con, n=10)[-1] * 1e3:.0f} ms")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
