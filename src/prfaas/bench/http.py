"""A lean HTTP/1.1 client for the load generator: keep-alive pool, chunked bodies, no TLS.

httpx costs about 2.5 ms of CPU per streamed request on the 2-core dev box, more than the server
under test; at the rates we bench, the load generator must stay cheap, so the hot path is plain
asyncio streams. Discovery (GET /v1/models) and anything unusual still go through httpx.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

MAX_HEADER_BYTES = 64 * 1024


class ProtocolError(Exception):
    """The server's reply is not the HTTP/1.1 we speak."""


class ConnectError(OSError):
    """No TCP connection could be opened."""


_STALE = (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError)


@dataclass(slots=True)
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[str, str]
    _conn: _Conn
    _pool: Pool
    _done: bool = False
    _reusable: bool = field(default=True)

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        """The body, piece by piece as it arrives (chunked, sized or until close)."""
        reader = self._conn.reader
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";", 1)[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")  # no trailers from the servers we bench
                    break
                data = await reader.readexactly(size + 2)
                yield data[:-2]
        elif "content-length" in self.headers:
            n = int(self.headers["content-length"])
            if n:
                yield await reader.readexactly(n)
        else:
            self._reusable = False
            while data := await reader.read(65536):
                yield data
        self._done = True

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self.iter_bytes()])

    def release(self) -> None:
        """Give the connection back (or close it if the body was not read to its end)."""
        keep = self._done and self._reusable and \
            self.headers.get("connection", "").lower() != "close"
        self._pool.put(self._conn, keep)


class Pool:
    """Idle keep-alive connections to one host:port."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the lean client speaks plain http://host:port only, not {url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.idle: list[_Conn] = []

    async def _get(self) -> tuple[_Conn, bool]:
        """A connection and whether it was reused from the idle list."""
        while self.idle:
            conn = self.idle.pop()
            if not conn.reader.at_eof() and not conn.writer.is_closing():
                return conn, True
            conn.writer.close()
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        except OSError as exc:
            raise ConnectError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        return _Conn(reader, writer), False

    def put(self, conn: _Conn, keep: bool) -> None:
        if keep:
            self.idle.append(conn)
        else:
            conn.writer.close()

    async def post(self, path: str, body: bytes) -> Response:
        """Send a JSON POST; the caller reads the Response and then calls release().

        A kept-alive connection the server closed meanwhile fails before any reply byte; the
        request then goes once more on a fresh connection (the usual keep-alive race).
        """
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        while True:
            conn, reused = await self._get()
            try:
                conn.writer.write(head + body)
                status, headers = await _read_head(conn.reader)
            except _STALE as exc:
                conn.writer.close()
                if reused and not getattr(exc, "partial", b""):
                    continue
                raise
            except BaseException:
                conn.writer.close()
                raise
            return Response(status, headers, conn, self)

    def close(self) -> None:
        for conn in self.idle:
            conn.writer.close()
        self.idle.clear()


class FailoverPool:
    """Pools to several servers (router replicas): requests go to the current one; a connection
    that fails before any byte of a reply (refused, or closed by a server that died) sends the
    request to the next URL, which then becomes current. A reply that had started is never
    replayed: its stream's failure is the caller's to report."""

    def __init__(self, urls: list[str]) -> None:
        if not urls:
            raise ValueError("no URL")
        self.pools = [Pool(u) for u in urls]
        self.current = 0
        self.failovers = 0

    async def post(self, path: str, body: bytes) -> Response:
        last: BaseException | None = None
        first, n = self.current, len(self.pools)
        for k in range(n):
            i = (first + k) % n
            try:
                return await self.pools[i].post(path, body)
            except (ConnectError, *_STALE) as exc:  # no reply byte came: safe to send elsewhere
                last = exc
                if self.current == i:  # (a concurrent request may have moved on already)
                    self.current = (i + 1) % n
                self.failovers += k + 1 < n
        assert last is not None
        raise last

    def close(self) -> None:
        for pool in self.pools:
            pool.close()


AnyPool = Pool | FailoverPool


def make_pool(url: str) -> AnyPool:
    """One server (`http://h:p`) or several with failover (`http://a:p,http://b:q`)."""
    urls = [u for u in url.split(",") if u]
    return Pool(urls[0]) if len(urls) == 1 else FailoverPool(urls)


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as exc:
        raise ProtocolError("response headers too long") from exc
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError("response headers too long")
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers
