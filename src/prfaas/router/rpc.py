"""A minimal keep-alive HTTP/1.1 client for the router's hot path (worker /prefill and /decode).

httpx's connection pool costs the router milliseconds of CPU per request under load (it rescans
every pooled connection on each request event); the two calls the router makes per request need
none of its features: POST a JSON body, read a JSON body (Content-Length) or a chunked NDJSON
stream, keep the connection for the next call.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

CONNECT_TIMEOUT_S = 5.0
MAX_IDLE = 64
_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class RpcError(Exception):
    """The connection failed or the peer broke HTTP: the worker is gone or unusable."""


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes


class NodeClient:
    """Idle connections to one worker, reused call after call."""

    def __init__(
        self, host: str, port: int, tls: ssl.SSLContext | None = None, server_name: str = ""
    ) -> None:
        self.host, self.port = host, port
        self.tls, self.server_name = tls, server_name  # TLS: the peer must prove server_name
        self._idle: list[_Conn] = []
        self._head = f"Host: {host}:{port}\r\nContent-Type: application/json\r\n".encode()

    async def _connect(self) -> _Conn:
        while self._idle:
            reader, writer = self._idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer
            writer.close()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.host,
                    self.port,
                    ssl=self.tls,
                    server_hostname=self.server_name if self.tls is not None else None,
                ),
                CONNECT_TIMEOUT_S,
            )
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            raise RpcError(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer

    def close(self) -> None:
        """Close the idle connections (the node died or moved)."""
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()

    def _release(self, conn: _Conn, keep: bool) -> None:
        if keep and len(self._idle) < MAX_IDLE:
            self._idle.append(conn)
        else:
            conn[1].close()

    async def _request(self, path: str, body: bytes) -> tuple[_Conn, int, dict[str, str]]:
        conn = await self._connect()
        reader, writer = conn
        try:
            writer.write(
                b"POST "
                + path.encode()
                + b" HTTP/1.1\r\n"
                + self._head
                + b"Content-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            writer.close()
            raise RpcError(f"{self.host}:{self.port}{path}: {type(exc).__name__}: {exc}") from None
        except asyncio.CancelledError:
            writer.close()  # the caller gave up (client gone): the worker sees it and aborts
            raise
        lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            writer.close()
            raise RpcError(f"{self.host}:{self.port}{path}: bad status line {lines[0]!r}") from None
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        return conn, status, headers

    async def post(self, path: str, body: bytes) -> Reply:
        conn, status, headers = await self._request(path, body)
        reader = conn[0]
        try:
            if headers.get("transfer-encoding", "").lower() == "chunked":
                data = b"".join([chunk async for chunk in _chunks(reader)])
            else:
                data = await reader.readexactly(int(headers.get("content-length", "0")))
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            conn[1].close()
            raise RpcError(f"{self.host}:{self.port}{path}: body: {exc}") from None
        except asyncio.CancelledError:
            conn[1].close()
            raise
        self._release(conn, headers.get("connection", "").lower() != "close")
        return Reply(status, data)

    async def post_stream(self, path: str, body: bytes) -> Stream:
        conn, status, headers = await self._request(path, body)
        return Stream(self, conn, status, headers)


class Stream:
    """A response read line by line (NDJSON over chunked transfer encoding)."""

    def __init__(
        self, client: NodeClient, conn: _Conn, status: int, headers: dict[str, str]
    ) -> None:
        self.client, self.conn, self.status, self.headers = client, conn, status, headers
        self._done = False

    async def read_all(self) -> bytes:
        return b"".join([line async for line in self.lines()])

    async def lines(self) -> AsyncIterator[bytes]:
        reader = self.conn[0]
        if self.headers.get("transfer-encoding", "").lower() != "chunked":
            n = int(self.headers.get("content-length", "0"))
            data = await reader.readexactly(n)
            self._finish()
            for line in data.splitlines():
                yield line
            return
        pending = b""
        try:
            async for chunk in _chunks(reader):
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    yield line
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self.close()
            raise RpcError(f"{self.client.host}:{self.client.port} stream: {exc}") from None
        if pending:
            yield pending
        self._finish()

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            keep = self.headers.get("connection", "").lower() != "close"
            self.client._release(self.conn, keep)

    def close(self) -> None:
        """Abandon the stream: the connection is closed (the worker sees the client go away)."""
        if not self._done:
            self._done = True
            with contextlib.suppress(Exception):
                self.conn[1].close()


async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        size_line = await reader.readline()
        if not size_line:
            raise asyncio.IncompleteReadError(b"", None)
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return
        data = await reader.readexactly(size + 2)
        yield data[:-2]
