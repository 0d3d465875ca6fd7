"""Benchmark child processes (receiver and sender), driven by JSON lines on stdin/stdout.

    python -m prfaas.transfer.benchproc recv --host H --port P --prealloc BYTES
    python -m prfaas.transfer.benchproc send --host H --port P --source BYTES

The transfer secret is the first line on stdin (hex): never on the command line, where `ps`
shows it to every user.

The receiver prints {"event": "ready", "port": P}, then one {"event": "done", ...} line per
completed transfer (with a digest of the received bytes, computed after the transfer). The sender
prints {"event": "ready"} and then answers each command line with a result line. Both exit when
stdin closes, so an orchestrator that dies takes them along.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from prfaas.security.tls import Pki
from prfaas.transfer import checksum
from prfaas.transfer.client import TransferClient
from prfaas.transfer.payloads import LayerPayload, ReceivedTransfer
from prfaas.transfer.server import TransferServer

PATTERN_BYTES = (16 << 20) + 4099  # not a power of two: chunks at different offsets differ


def make_source(nbytes: int, seed: int = 7) -> bytearray:
    """Deterministic pseudo-random bytes (a repeated random block; fast to build)."""
    block = random.Random(seed).randbytes(min(PATTERN_BYTES, max(nbytes, 1)))
    reps, rest = divmod(nbytes, len(block))
    return bytearray(block) * reps + bytearray(block[:rest])


def digest(*parts: memoryview | bytes) -> str:
    """Digest of the concatenation of `parts` (streamed, no joining copy)."""
    alg = checksum.best_common(checksum.supported())
    hasher = checksum.new_hasher(alg)
    for part in parts:
        hasher.update(part)
    return f"{checksum.NAMES[alg]}:{hasher.intdigest():016x}"


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Prealloc:
    """Allocator handing out consecutive views of one touched buffer (reset per transfer).

    With `reuse`, every layer lands at the start of the buffer instead, like iperf3 reading into
    one buffer over and over (cache-resident; the bytes are verified per chunk, then overwritten).
    """

    def __init__(self, nbytes: int, reuse: bool = False) -> None:
        self.reuse = reuse
        self.buf = bytearray(nbytes)
        self.buf[::4096] = b"\x01" * len(range(0, nbytes, 4096))  # fault every page in now
        self.view = memoryview(self.buf)
        self.current = ""
        self.cursor = 0

    def __call__(self, transfer_id: str, layer: int, nbytes: int) -> memoryview:
        if transfer_id != self.current or self.reuse:
            self.current, self.cursor = transfer_id, 0
        if self.cursor + nbytes > len(self.buf):
            return memoryview(bytearray(nbytes))
        start, self.cursor = self.cursor, self.cursor + nbytes
        return self.view[start : self.cursor]


async def _stdin_closed() -> None:
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()

    def on_readable() -> None:
        if not os.read(sys.stdin.fileno(), 65536):
            closed.set()

    loop.add_reader(sys.stdin.fileno(), on_readable)
    await closed.wait()
    loop.remove_reader(sys.stdin.fileno())


async def _recv(args: argparse.Namespace) -> None:
    prealloc = Prealloc(args.prealloc, reuse=args.reuse)

    mark = [_cpu_s()]

    def on_done(t: ReceivedTransfer) -> None:
        cpu = _cpu_s() - mark[0]
        dig = digest(*t.layers)  # after the transfer: not part of its timing
        mark[0] = _cpu_s()
        emit(
            {
                "event": "done",
                "id": t.transfer_id,
                "bytes": t.total_bytes,
                "digest": dig,
                "rejected": t.rejected_chunks,
                "seconds": t.seconds,
                "cpu_s": cpu,
            }
        )

    tls = _pki(args, "receiver")
    server = TransferServer(
        args.host, args.port, args.secret, on_done, allocator=prealloc,
        tls=tls.server if tls else None,
    )
    await server.start()
    emit({"event": "ready", "port": server.port})
    await _stdin_closed()
    await server.close()


async def _layers(
    src: memoryview, size: int, n_layers: int, interval_s: float, reuse: bool
) -> AsyncIterator[LayerPayload]:
    """Emit `n_layers` equal slices of `size` bytes, one every `interval_s` (a producer's pace).

    With `reuse`, every layer is a view of the start of `src` (iperf3-like buffer reuse).
    """
    bounds = [size * i // n_layers for i in range(n_layers + 1)]
    t0 = time.monotonic()
    for i in range(n_layers):
        if interval_s and i:
            await asyncio.sleep(max(0.0, t0 + i * interval_s - time.monotonic()))
        lo, hi = (0, bounds[i + 1] - bounds[i]) if reuse else (bounds[i], bounds[i + 1])
        yield LayerPayload(i, src[lo:hi])


def _pki(args: argparse.Namespace, name: str) -> Pki | None:
    return Pki(Path(args.pki), name) if args.pki else None


async def _send_one(
    args: argparse.Namespace, src: memoryview, cmd: dict[str, Any]
) -> dict[str, Any]:
    tls = _pki(args, "sender")
    client = TransferClient(
        args.host,
        args.port,
        args.secret,
        connections=int(cmd["connections"]),
        chunk_bytes=int(cmd.get("chunk_bytes", 4 << 20)),
        checksum_alg=cmd.get("checksum"),
        capacity_gbps=cmd.get("link_gbps"),
        tls=tls.client if tls is not None and cmd.get("tls") else None,
        server_name="receiver",
    )
    size = int(cmd["size"])
    async with client:
        cpu0 = _cpu_s()
        layers, interval = int(cmd.get("layers", 1)), float(cmd.get("interval_s", 0))
        stream = _layers(src, size, layers, interval, bool(cmd.get("reuse", False)))
        result = await client.send(str(cmd["id"]), stream, expected_bytes=size)
        cpu = _cpu_s() - cpu0
        tel = client.telemetry()
    return {
        "event": "result",
        "id": cmd["id"],
        "bytes": result.total_bytes,
        "seconds": result.seconds,
        "tail_seconds": result.tail_seconds,
        "gbps": result.gbps,
        "checksum": result.checksum,
        "retransmitted_chunks": result.retransmitted_chunks,
        "reconnects": result.reconnects,
        "tcp_retransmits": tel.retransmits,
        "tcp_retransmit_rate": tel.retransmit_rate,
        "rtt_ms": tel.rtt_ms,
        "cpu_s": cpu,
    }


def _send(args: argparse.Namespace) -> None:
    src = memoryview(make_source(args.source))
    digests: dict[int, str] = {}
    emit({"event": "ready"})
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        if cmd.get("op") == "digest":
            size = int(cmd["size"])
            if size not in digests:
                digests[size] = digest(src[:size])
            emit({"event": "digest", "size": size, "digest": digests[size]})
            continue
        try:
            emit(asyncio.run(_send_one(args, src, cmd)))
        except Exception as exc:
            emit({"event": "error", "id": cmd.get("id"), "error": f"{type(exc).__name__}: {exc}"})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m prfaas.transfer.benchproc")
    p.add_argument("role", choices=("recv", "send"))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--prealloc", type=int, default=0)
    p.add_argument("--source", type=int, default=0)
    p.add_argument("--reuse", action="store_true", help="recv: land every layer at offset 0")
    p.add_argument("--pki", help="PKI folder with sender/receiver certificates: TLS on request")
    args = p.parse_args(argv)
    try:
        args.secret = bytes.fromhex(sys.stdin.readline().strip())
    except ValueError:
        p.error("the first stdin line must be the transfer secret in hex")
    if args.role == "recv":
        asyncio.run(_recv(args))
    else:
        _send(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
