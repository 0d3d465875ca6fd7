"""An open-loop load generator for bench_live_fleet.py: Poisson arrivals at `--rate`, short
non-streaming completions over keep-alive HTTP/1.1, alternating between the `--url`s. Plain asyncio
streams (no HTTP library): the generator must cost far less CPU per request than the routers it
measures. Prints one JSON object: sent, status counts, achieved rate, latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from urllib.parse import urlsplit

MODEL = "fleet"


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def request(self, host: str, body: bytes) -> tuple[int, bytes]:
        head = (
            f"POST /v1/completions HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)


class Pool:
    """Idle keep-alive connections per URL; a new one when none is idle."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = str(parts.hostname), int(parts.port or 80)
        self.idle: list[Conn] = []

    async def send(self, body: bytes) -> int:
        if self.idle:  # the server may have closed an idle keep-alive connection: then a new one
            conn = self.idle.pop()
            try:
                status, _ = await conn.request(f"{self.host}:{self.port}", body)
                self.idle.append(conn)
                return status
            except (OSError, IndexError, asyncio.IncompleteReadError):
                conn.writer.close()
        conn = Conn(*await asyncio.open_connection(self.host, self.port))
        status, _ = await conn.request(f"{self.host}:{self.port}", body)
        self.idle.append(conn)
        return status


def body(rng: random.Random, i: int) -> bytes:
    words = rng.randint(40, 400)  # ~5 bytes per word: 200-2,000 byte-level tokens
    prompt = f"req {i} " + " ".join(
        rng.choice(("alpha", "beta", "gamma", "delta")) for _ in range(words)
    )
    return json.dumps({"model": MODEL, "prompt": prompt, "max_tokens": 1}).encode()


async def run(urls: list[str], rate: float, seconds: float, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    pools = [Pool(u) for u in urls]
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    tasks: set[asyncio.Task[None]] = set()

    async def one(i: int) -> None:
        t0 = time.perf_counter()
        try:
            status = await pools[i % len(pools)].send(body(rng, i))
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
            statuses[type(exc).__name__] = statuses.get(type(exc).__name__, 0) + 1
            return
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if status == 200:
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    next_at, i = start, 0
    while next_at - start < seconds:
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        task = asyncio.create_task(one(i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
        next_at += rng.expovariate(rate)
    offered_s = time.perf_counter() - start
    await asyncio.gather(*tasks)
    latencies.sort()

    def pct(q: int) -> float:
        return round(latencies[min(len(latencies) - 1, q * len(latencies) // 100)] * 1e3, 2)

    return {
        "sent": i,
        "offered_per_s": round(i / offered_s, 1),
        "ok_per_s": round(len(latencies) / (time.perf_counter() - start), 1),
        "statuses": statuses,
        "latency_ms": {f"p{q}": pct(q) for q in (50, 90, 99)} if latencies else {},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", action="append", required=True)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(run(args.url, args.rate, args.seconds, args.seed))))


if __name__ == "__main__":
    main()
