"""Latency the HTTP edge adds per request: create_app(FakeBackend) vs a bare ASGI SSE server.

Both servers run in their own process (uvicorn, same loop/HTTP implementation) and stream the
same number of equally sized SSE chunks with zero service time; the same open-loop client
(prfaas.bench, in this process) sends a uniform 200 req/s. Three measures:
- server-side: an ASGI wrapper times each POST from the moment uvicorn hands it to the app to
  the first body byte and to the last (this is exactly what our layer adds: validation, pydantic,
  the Generation driver, OpenAI formatting, metrics; the bare app's numbers are its floor);
- server CPU per request (from /proc, contention-robust);
- client-observed TTFT/E2E (includes loopback HTTP, uvicorn and the httpx client).
Results go to docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_router_overhead.py --rate 200 --duration 10 --repeat 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from prfaas.bench.client import run_plan
from prfaas.bench.stats import latency_summary
from prfaas.bench.workload import PlannedRequest

REPO = Path(__file__).resolve().parents[1]
MODEL = "fake"
SAMPLES_PATH = "/__bench_samples"


def bare_app(num_tokens: int) -> Any:
    """A minimal ASGI app answering any POST with num_tokens OpenAI-shaped SSE chunks.

    It yields to the event loop between chunks as FakeBackend does, so both servers put the same
    packets on the wire (back-to-back writes would be coalesced by the kernel's TCP autocorking).
    """
    chunk = json.dumps({"id": "cmpl-0", "object": "text_completion", "created": 0, "model": MODEL,
                        "choices": [{"index": 0, "text": " word", "logprobs": None,
                                     "finish_reason": None}]}).encode()
    body = [b"data: " + chunk + b"\n\n"] * num_tokens + [b"data: [DONE]\n\n"]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        for piece in body:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


class Timed:
    """ASGI wrapper recording (first body byte, last byte) seconds after the app got the request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.samples: list[tuple[float, float]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == SAMPLES_PATH:
            body = json.dumps(self.samples).encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
            return
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        t0, first = time.perf_counter(), 0.0

        async def timed_send(message: dict[str, Any]) -> None:
            nonlocal first
            if message["type"] == "http.response.body" and message.get("body") and not first:
                first = time.perf_counter()
            await send(message)

        await self.app(scope, receive, timed_send)
        self.samples.append((first - t0, time.perf_counter() - t0))


def serve(variant: str, port: int, num_tokens: int) -> None:
    import uvicorn

    from prfaas.server import FakeBackend, create_app

    if variant == "bare":
        app = Timed(bare_app(num_tokens))
    else:
        app = Timed(create_app(FakeBackend(), model_name=MODEL, max_context_tokens=1_000_000))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(variant: str, num_tokens: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [sys.executable, __file__, "--serve", variant, "--port", str(port),
           "--tokens", str(num_tokens)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.post(f"{url}/v1/completions", json={"model": MODEL, "prompt": "x",
                                                      "max_tokens": 1}, timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{variant} server did not start")


def plan(rate: float, duration_s: float, num_tokens: int,
         prompt_tokens: int) -> list[PlannedRequest]:
    n = int(rate * duration_s)
    return [PlannedRequest(i, i / rate, (10_000 + i,), prompt_tokens, num_tokens, prompt_tokens)
            for i in range(n)]


def measure(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    proc, url = start_server(variant, args.tokens)
    try:
        warm = plan(args.rate, 1.0, args.tokens, args.prompt_tokens)
        asyncio.run(run_plan(url, warm, model=MODEL, endpoint="completions", timeout_s=30))
        cpu0 = cpu_seconds(proc.pid)
        load = plan(args.rate, args.duration, args.tokens, args.prompt_tokens)
        results, wall = asyncio.run(run_plan(url, load, model=MODEL, endpoint="completions",
                                             timeout_s=30))
        cpu = cpu_seconds(proc.pid) - cpu0
        server = httpx.get(f"{url}{SAMPLES_PATH}").json()[-len(load):]  # drop the warm-up
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    ok = [r for r in results if r.ok]
    return {"variant": variant, "sent": len(results), "ok": len(ok), "wall_s": wall,
            "cpu_ms_per_request": 1e3 * cpu / len(load),
            "server_first_s": latency_summary(f for f, _ in server),
            "server_total_s": latency_summary(t for _, t in server),
            "ttft_s": latency_summary(r.ttft_s for r in ok if r.ttft_s is not None),
            "e2e_s": latency_summary(r.e2e_s for r in ok if r.e2e_s is not None)}


def ms(summary: dict[str, float], q: str) -> str:
    return f"{summary[q] * 1e3:7.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--tokens", type=int, default=16, help="streamed chunks per request")
    p.add_argument("--prompt-tokens", type=int, default=1024)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--json", action="store_true", help="also print every run as JSON")
    p.add_argument("--serve", choices=["app", "bare"], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.tokens)
        return
    print(f"# {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load avg {os.getloadavg()[0]:.2f}, {args.rate:g} req/s x {args.duration:g} s, "
          f"{args.tokens} chunks, {args.prompt_tokens}-byte prompts")
    runs = [measure(v, args) for _ in range(args.repeat) for v in ("bare", "app")]
    print("variant  ok/sent    cpu/req | server first p50 p99 | server last p50 p99 | "
          "client TTFT p50 p99 | client E2E p50 p99  (ms)")
    for r in runs:
        print(f"{r['variant']:>7} {r['ok']:>4}/{r['sent']:<4} {r['cpu_ms_per_request']:7.2f} | "
              f"{ms(r['server_first_s'], 'p50')} {ms(r['server_first_s'], 'p99')} | "
              f"{ms(r['server_total_s'], 'p50')} {ms(r['server_total_s'], 'p99')} | "
              f"{ms(r['ttft_s'], 'p50')} {ms(r['ttft_s'], 'p99')} | "
              f"{ms(r['e2e_s'], 'p50')} {ms(r['e2e_s'], 'p99')}")
    if args.json:
        print(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
