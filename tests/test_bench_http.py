"""The lean HTTP/1.1 client of the load generator, against scripted raw-socket servers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from prfaas.bench.client import RequestResult, send_one
from prfaas.bench.http import ConnectError, FailoverPool, Pool, ProtocolError, make_pool
from prfaas.bench.workload import PlannedRequest

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
REQ = PlannedRequest(0, 0.0, (1,), 8, 2, 8)
SSE = (b'data: {"choices":[{"text":" a"}]}\n\ndata: {"choices":[{"text":" b"}]}\n\n'
       b'data: {"choices":[],"usage":{"completion_tokens":2}}\n\ndata: [DONE]\n\n')


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return await reader.readexactly(length)


def run(handler: Handler, client: Callable[[str], Awaitable[object]]) -> object:
    async def main() -> object:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await client(f"http://127.0.0.1:{port}")
        finally:
            server.close()

    return asyncio.run(main())


def test_streams_sse_over_one_kept_alive_connection() -> None:
    connections = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        for _ in range(3):
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            writer.write(chunked(SSE[:30], SSE[30:71], SSE[71:]))  # lines split across chunks
            await writer.drain()

    async def client(url: str) -> list[RequestResult]:
        pool = Pool(url)
        results = [await send_one(pool, REQ, 0.0, "m", "completions", True, 5) for _ in range(3)]
        pool.close()
        return results

    results = run(handler, client)
    assert isinstance(results, list)
    assert all(r.ok and r.output_tokens == 2 and len(r.itl_s) == 1 for r in results)
    assert len(connections) == 1


def test_stale_keepalive_connection_is_retried_once() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(SSE), SSE))
        await writer.drain()
        writer.close()  # the server drops the kept-alive connection right after

    async def client(url: str) -> list[RequestResult]:
        pool = Pool(url)
        first = await send_one(pool, REQ, 0.0, "m", "chat", True, 5)
        await asyncio.sleep(0.05)
        second = await send_one(pool, REQ, 0.0, "m", "chat", True, 5)
        pool.close()
        return [first, second]

    results = run(handler, client)
    assert isinstance(results, list) and all(r.ok for r in results)


@pytest.mark.parametrize(("reply", "kind"), [
    (b'HTTP/1.1 503 Service Unavailable\r\ncontent-length: 11\r\n\r\n{"error":1}', "http_503"),
    (b"SPDY/9 200 whatever\r\n\r\n", "bad_response"),
    (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", "bad_response"),
    (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n40\r\ndata: {", "disconnected"),
    (b"HTTP/1.1 200 OK\r\n\r\n" + SSE[:40], "incomplete"),  # closed before [DONE]
    (b"HTTP/1.1 200 OK\r\n\r\n" + b'data: {"error": {"message": "boom"}}\n\n', "stream_error"),
])
def test_failures_are_classified(reply: bytes, kind: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()
        writer.close()

    async def client(url: str) -> object:
        return await send_one(Pool(url), REQ, 0.0, "m", "completions", True, 5)

    result = run(handler, client)
    assert getattr(result, "error", None) == kind, result


def test_timeout_and_connect_errors() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(10)

    async def client(url: str) -> object:
        return await send_one(Pool(url), REQ, 0.0, "m", "completions", True, 0.2)

    assert getattr(run(silent, client), "error", None) == "timeout"

    async def refused() -> object:
        return await send_one(Pool("http://127.0.0.1:9"), REQ, 0.0, "m", "chat", True, 5)

    assert asyncio.run(refused()).error == "connect"  # type: ignore[attr-defined]


def test_pool_rejects_what_it_cannot_speak() -> None:
    with pytest.raises(ValueError):
        Pool("https://example.com")
    assert issubclass(ConnectError, OSError) and issubclass(ProtocolError, Exception)


def test_failover_pool_moves_on_before_a_reply_and_never_replays_a_started_one() -> None:
    """URL A refuses, B closes without a byte (a router killed mid-request), C answers: the
    request succeeds on C; a stream C cuts after it started is not sent anywhere else."""
    seen: list[str] = []

    async def dies(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        seen.append("b")
        writer.transport.abort()

    async def answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append("c")
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunked(SSE))
        await writer.drain()

    async def cuts(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append("cut")
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunked(SSE[:30]))
        await writer.drain()
        writer.transport.abort()

    async def main() -> tuple[RequestResult, RequestResult, int]:
        b = await asyncio.start_server(dies, "127.0.0.1", 0)
        c = await asyncio.start_server(answers, "127.0.0.1", 0)
        d = await asyncio.start_server(cuts, "127.0.0.1", 0)
        urls = [f"http://127.0.0.1:{s.sockets[0].getsockname()[1]}" for s in (b, c, d)]
        try:
            pool = make_pool(",".join(["http://127.0.0.1:9", *urls[:2]]))
            ok = await send_one(pool, REQ, 0.0, "m", "completions", True, 5)
            assert isinstance(pool, FailoverPool)
            failovers = pool.failovers
            pool.close()
            cut_pool = make_pool(",".join([urls[2], urls[1]]))
            cut = await send_one(cut_pool, REQ, 0.0, "m", "completions", True, 5)
            cut_pool.close()
            return ok, cut, failovers
        finally:
            for s in (b, c, d):
                s.close()

    ok, cut, failovers = asyncio.run(main())
    assert ok.ok and ok.text == " a b" and failovers == 2
    assert not cut.ok and cut.error in ("disconnected", "incomplete")
    assert seen == ["b", "c", "cut"]  # the cut stream went to no other server
