"""Connection pool of a TransferClient: authenticated connections, reconnects, requeueing."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field

from prfaas.transfer import frames as fr
from prfaas.transfer.errors import (
    AuthError,
    LinkError,
    ProtocolError,
)
from prfaas.transfer.protocol import READY, ClientConnection
from prfaas.transfer.sockio import Reader, tune
from prfaas.transfer.telemetry import LinkMonitor, LinkTelemetry
from prfaas.transfer.tlsio import handshake, sendall
from prfaas.transfer.tracker import Chunk, SendTracker

_CKey = tuple[int, int, int]  # (xid, layer, offset)


@dataclass(slots=True, eq=False)
class _Commit:
    xid: int


@dataclass(slots=True, eq=False)
class _Conn:
    index: int
    sock: socket.socket
    proto: ClientConnection
    reader: Reader
    inflight: dict[_CKey, Chunk] = field(default_factory=dict)
    control: deque[bytes] = field(default_factory=deque)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    alive: bool = True
    last_progress: float = 0.0


@dataclass(slots=True, eq=False)
class _Outgoing:
    tracker: SendTracker
    done: asyncio.Future[int]
    t_first: float = 0.0
    t_last: float = 0.0
    commit_sent: bool = False


class ConnectionPool:
    """State and connections shared by `TransferClient` (see client.py for the data path).

    connections: TCP connections to open; chunk_bytes: unit of checksum, ACK and resend;
    max_inflight_bytes: sent but unacknowledged bytes allowed (backpressure); max_queued_bytes:
    produced but unsent bytes before the producer is paused; stall_timeout_s: a connection with
    chunks in flight and no ACK for this long is dropped and re-opened; max_reconnects: attempts
    per drop; max_chunk_attempts: sends of one chunk before ChecksumError; capacity_gbps: the
    link's known rate, for telemetry; checksum_alg: "crc32" or "xxh3-64" (default: fastest
    common).
    """

    def __init__(
        self,
        host: str,
        port: int,
        secret: bytes,
        *,
        connections: int = 4,
        chunk_bytes: int = 4 << 20,
        max_inflight_bytes: int = 256 << 20,
        max_queued_bytes: int = 1 << 30,
        connect_timeout_s: float = 10.0,
        stall_timeout_s: float = 30.0,
        max_reconnects: int = 5,
        max_chunk_attempts: int = 4,
        capacity_gbps: float | None = None,
        checksum_alg: str | None = None,
        tls: ssl.SSLContext | None = None,
        server_name: str | None = None,
    ) -> None:
        if connections < 1:
            raise ValueError("connections must be >= 1")
        if not fr.MIN_CHUNK_BYTES <= chunk_bytes <= fr.MAX_CHUNK_BYTES:
            raise ValueError(f"chunk_bytes must be in [{fr.MIN_CHUNK_BYTES}, {fr.MAX_CHUNK_BYTES}]")
        self.host, self.port, self._secret = host, port, secret
        # TLS: every connection is encrypted and the receiver must prove `server_name`.
        self.tls, self.server_name = tls, server_name
        self.connections = connections
        self.chunk_bytes = chunk_bytes
        self.max_inflight_bytes = max_inflight_bytes
        self.max_queued_bytes = max_queued_bytes
        self.connect_timeout_s = connect_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.max_reconnects = max_reconnects
        self.max_chunk_attempts = max_chunk_attempts
        self.checksum_alg = checksum_alg  # None: fastest both ends support
        self.monitor = LinkMonitor(f"{host}:{port}", capacity_gbps)
        self.reconnects = 0
        self.chunk_retransmits = 0
        self._session = os.urandom(fr.SESSION_BYTES)
        self._conns: list[_Conn | None] = [None] * connections
        self._reconnecting: set[int] = set()
        self._queue: deque[Chunk | _Commit] = deque()
        self._queued_bytes = 0
        self._inflight_bytes = 0
        self._wake = asyncio.Event()
        self._active: dict[int, _Outgoing] = {}
        self._next_xid = 1
        self._mask = 0
        self._instance = 0
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- lifecycle -------------------------------------------------------------------------
    async def connect(self) -> None:
        try:
            await asyncio.gather(*(self._open(i) for i in range(self.connections)))
        except BaseException:
            await self.close()
            raise
        self._spawn(self._watchdog())

    async def close(self) -> None:
        self._closed = True
        for out in self._active.values():
            if not out.done.done():
                out.done.set_exception(LinkError("transfer client closed"))
        tasks = [t for c in self._conns if c is not None for t in c.tasks] + list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in self._conns:
            if c is not None:
                c.sock.close()
        self._conns = [None] * self.connections

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def live_connections(self) -> int:
        return sum(1 for c in self._conns if c is not None and c.alive)

    def telemetry(self) -> LinkTelemetry:
        live = [c for c in self._conns if c is not None and c.alive]
        return self.monitor.snapshot(
            [c.sock for c in live],
            in_flight_bytes=self._inflight_bytes,
            queue_depth=len(self._queue),
            queued_bytes=self._queued_bytes,
            chunk_retransmits=self.chunk_retransmits,
            connections=len(live),
        )

    # ---- connections -----------------------------------------------------------------------
    async def _open(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        tune(sock)
        proto = ClientConnection(self._secret, self._session, index)
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                await loop.sock_connect(sock, (self.host, self.port))
                t0 = time.monotonic()
                if self.tls is not None:
                    sock = await handshake(
                        loop, sock, self.tls, server_side=False, server_hostname=self.server_name
                    )
                reader = Reader(loop, sock)
                await sendall(loop, sock, proto.hello())
                while proto.state != READY:
                    reply = proto.receive(await reader.read_frame())
                    if reply:
                        await sendall(loop, sock, reply)
                self.monitor.on_handshake((time.monotonic() - t0) / 2)  # two round trips
        except BaseException:
            sock.close()
            raise
        self._mask = proto.checksum_mask
        if self._instance and proto.server_instance != self._instance:
            # The receiver restarted: whatever it had of our transfers is gone.
            err = LinkError(f"receiver {self.host}:{self.port} restarted; transfer state lost")
            for out in self._active.values():
                if not out.done.done():
                    out.done.set_exception(err)
        self._instance = proto.server_instance
        conn = _Conn(index, sock, proto, reader)
        self._conns[index] = conn
        conn.tasks = [
            asyncio.ensure_future(self._writer(conn)),
            asyncio.ensure_future(self._reader(conn)),
        ]
        self._wake.set()

    def _fail(self, conn: _Conn, exc: BaseException) -> None:
        """Take a broken connection out, put its unacknowledged work back, and reconnect."""
        if not conn.alive:
            return
        conn.alive = False
        current = asyncio.current_task()
        for task in conn.tasks:
            if task is not current:
                task.cancel()
        requeue = [ch for ch in conn.inflight.values() if not ch.acked]
        for ch in conn.inflight.values():
            self._inflight_bytes -= len(ch.view)
        conn.inflight.clear()
        for ch in requeue:
            ch.conn = None
            self.chunk_retransmits += 1
            out = self._active.get(ch.xid)
            if out is not None:
                out.tracker.retransmits += 1
        self._queue.extendleft(reversed(requeue))
        self._queued_bytes += sum(len(ch.view) for ch in requeue)
        # A COMMIT or its COMMITTED may have died with the connection: commits are idempotent.
        for xid, out in self._active.items():
            if out.commit_sent and not out.done.done():
                out.commit_sent = False
                self._queue.append(_Commit(xid))
        self._wake.set()
        if not self._closed:
            self._reconnecting.add(conn.index)  # now, so no one declares the link dead meanwhile
            self._spawn(self._retire_and_reconnect(conn, exc))

    async def _retire_and_reconnect(self, conn: _Conn, exc: BaseException) -> None:
        # Close the socket only after its tasks are gone: a pending sock_sendall must deregister
        # its file descriptor first, or a reconnect could reuse the number.
        last: BaseException = exc
        try:
            await asyncio.gather(*conn.tasks, return_exceptions=True)
            self.monitor.retire(conn.sock)
            conn.sock.close()
            if self._conns[conn.index] is conn:
                self._conns[conn.index] = None
            delay = 0.02
            for _ in range(self.max_reconnects):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                try:
                    await self._open(conn.index)
                    self.reconnects += 1
                    return
                except AuthError as err:  # retrying cannot fix a wrong secret
                    last = err
                    break
                except (OSError, TimeoutError, ProtocolError) as err:
                    last = err
        finally:
            self._reconnecting.discard(conn.index)
            self._check_link(last)

    def _check_link(self, last: BaseException) -> None:
        if self.live_connections or self._reconnecting or self._closed:
            return
        err = LinkError(f"all connections to {self.host}:{self.port} failed: {last}")
        for out in self._active.values():
            if not out.done.done():
                out.done.set_exception(err)

    async def _watchdog(self) -> None:
        """Declare a connection dead when its in-flight chunks see no ACK for stall_timeout_s."""
        period = max(0.05, min(1.0, self.stall_timeout_s / 4))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for c in [c for c in self._conns if c is not None and c.alive and c.inflight]:
                if now - c.last_progress > self.stall_timeout_s:
                    self._fail(c, TimeoutError(f"no ACK for {self.stall_timeout_s} s"))

    async def _writer(self, conn: _Conn) -> None:
        raise NotImplementedError

    async def _reader(self, conn: _Conn) -> None:
        raise NotImplementedError
