"""In-process WAN emulation: a token-bucket rate limiter and a TCP relay adding one-way delay.

`ShapingRelay` accepts connections, opens one to the target for each, and forwards both ways.
Bytes going upstream (client -> target) are serialised through a shared `TokenBucket` (one link,
all connections) and then held for the one-way delay; bytes coming back are held for the delay.
Each direction of each connection buffers at most `window_bytes`, which plays the role of the
largest TCP window a flow can have. The relay splits TCP, so it emulates latency and bandwidth
but not loss or reordering. `tamper` lets tests corrupt or cut the upstream byte stream.

Run standalone (e.g. inside a network namespace)::

    python -m prfaas.transfer.shaping --listen 10.0.0.2:7100 --target 127.0.0.1:7000 \
        --delay-ms 20 [--rate-gbps 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections import deque
from collections.abc import Callable

READ_BYTES = 256 << 10
DEFAULT_WINDOW_BYTES = 32 << 20

# (connection number, offset of `data` in the upstream stream, data) -> bytes to forward,
# or None to cut the connection there.
Tamper = Callable[[int, int, bytes], bytes | None]


class TokenBucket:
    """Serialises bytes at `rate_gbps`; `burst_bytes` may go out back to back after idling.

    Bookings are positions in the link's byte stream, not departure times: a rate change re-times
    every byte not yet sent (a link that comes back from a cut drains its queue at the restored
    rate, instead of holding bytes booked at the cut rate for minutes), and wakes the senders.
    """

    def __init__(self, rate_gbps: float, burst_bytes: int = 64 << 10) -> None:
        self.burst_bytes = burst_bytes
        self._base_t: float | None = None  # the clock at the last rate change (or first use)
        self._base_off = 0.0  # the link's byte position at _base_t
        self._end_off = -float(burst_bytes)  # where the last booking ends (idle: burst credit)
        self._changed = asyncio.Event()
        self.set_rate(rate_gbps)

    def set_rate(self, rate_gbps: float, now: float | None = None) -> None:
        """Change the rate live: bytes already booked but not yet sent move at the new rate."""
        if rate_gbps <= 0:
            raise ValueError("rate_gbps must be > 0")
        if self._base_t is not None:
            now = time.monotonic() if now is None else now
            self._base_off, self._base_t = self._offset_at(now), now
        self.rate_bytes_per_s = rate_gbps * 1e9 / 8
        self.burst_s = self.burst_bytes / self.rate_bytes_per_s
        woken, self._changed = self._changed, asyncio.Event()
        woken.set()

    def _offset_at(self, t: float) -> float:
        assert self._base_t is not None
        return self._base_off + (t - self._base_t) * self.rate_bytes_per_s

    def time_of(self, offset: float) -> float:
        """When the byte at `offset` leaves the link, at the current rate."""
        assert self._base_t is not None
        return self._base_t + (offset - self._base_off) / self.rate_bytes_per_s

    def book(self, nbytes: int, now: float) -> float:
        """Book `nbytes` on the link; returns the position where they end (see `time_of`)."""
        if self._base_t is None:
            self._base_t = now
            self._end_off = self._base_off - self.burst_bytes
        start = max(self._end_off, self._offset_at(now) - self.burst_bytes)
        self._end_off = start + nbytes
        return self._end_off

    def reserve(self, nbytes: int, now: float) -> float:
        """Book `nbytes` on the link; returns the time their last byte has left it."""
        return max(self.time_of(self.book(nbytes, now)), now)

    async def sleep_until_sent(self, offset: float, delay_s: float = 0.0) -> None:
        """Sleep until the byte at `offset` has left the link, plus `delay_s`; re-timed (and
        woken) by every rate change meanwhile."""
        while (wait := self.time_of(offset) + delay_s - time.monotonic()) > 0:
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), wait)
            except TimeoutError:
                return

    async def acquire(self, nbytes: int) -> None:
        """Wait until `nbytes` may be sent at the bucket's rate (sender-side pacing)."""
        await self.sleep_until_sent(self.book(nbytes, time.monotonic()))


class ShapingRelay:
    """TCP relay: `listen` -> `target`, with one-way delay and an optional shared rate limit."""

    def __init__(
        self,
        listen_host: str,
        listen_port: int,
        target_host: str,
        target_port: int,
        *,
        one_way_delay_s: float = 0.0,
        rate_gbps: float | None = None,
        window_bytes: int = DEFAULT_WINDOW_BYTES,
        tamper: Tamper | None = None,
    ) -> None:
        self.listen_host, self.port = listen_host, listen_port
        self.target = (target_host, target_port)
        self.delay_s = one_way_delay_s
        self.bucket = TokenBucket(rate_gbps) if rate_gbps else None
        self.window_bytes = window_bytes
        self.tamper = tamper
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.listen_host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> ShapingRelay:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _handle(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        index = self.connections
        self.connections += 1
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            down_w.close()
            self._tasks.discard(task)
            return
        try:
            await asyncio.gather(
                self._pump(down_r, up_w, self.bucket, index),
                self._pump(up_r, down_w, None, None),
            )
        except (OSError, _Cut):
            pass
        except asyncio.CancelledError:
            pass  # close(): the handler task ends here, quietly (asyncio logs cancelled handlers)
        finally:
            for w in (up_w, down_w):
                w.transport.abort()
            self._tasks.discard(task)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        bucket: TokenBucket | None,
        index: int | None,
    ) -> None:
        queue: deque[tuple[float, bytes | None]] = deque()
        room = asyncio.Event()
        ready = asyncio.Event()
        room.set()
        buffered = [0]

        async def rx() -> None:
            offset = 0
            while True:
                await room.wait()
                data = await reader.read(READ_BYTES)
                if data and index is not None and self.tamper is not None:
                    tampered = self.tamper(index, offset, data)
                    if tampered is None:
                        raise _Cut
                    offset += len(data)
                    data = tampered
                now = time.monotonic()
                # Shaped: the position its last byte takes on the link (timed when sent, so a
                # rate change meanwhile re-times it); unshaped: when it is due out.
                mark = bucket.book(len(data), now) if bucket else now + self.delay_s
                queue.append((mark, data or None))
                ready.set()
                if not data:
                    return
                buffered[0] += len(data)
                if buffered[0] >= self.window_bytes:
                    room.clear()

        async def tx() -> None:
            while True:
                await ready.wait()
                mark, data = queue.popleft()
                if not queue:
                    ready.clear()
                if bucket is not None:
                    await bucket.sleep_until_sent(mark, self.delay_s)
                else:
                    await asyncio.sleep(max(0.0, mark - time.monotonic()))
                if data is None:
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
                buffered[0] -= len(data)
                if buffered[0] < self.window_bytes:
                    room.set()

        await asyncio.gather(rx(), tx())


class _Cut(Exception):
    """The tamper hook asked to cut the connection."""


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


async def _serve(args: argparse.Namespace) -> None:
    lhost, lport = _hostport(args.listen)
    thost, tport = _hostport(args.target)
    relay = ShapingRelay(
        lhost,
        lport,
        thost,
        tport,
        one_way_delay_s=args.delay_ms / 1000.0,
        rate_gbps=args.rate_gbps,
        window_bytes=args.window_bytes,
    )
    await relay.start()
    print(json.dumps({"event": "ready", "port": relay.port}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await relay.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m prfaas.transfer.shaping", description=__doc__)
    p.add_argument("--listen", required=True, help="HOST:PORT to accept on (PORT 0 = any)")
    p.add_argument("--target", required=True, help="HOST:PORT to forward to")
    p.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay, each direction")
    p.add_argument("--rate-gbps", type=float, default=None, help="upstream rate limit")
    p.add_argument("--window-bytes", type=int, default=DEFAULT_WINDOW_BYTES)
    asyncio.run(_serve(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
