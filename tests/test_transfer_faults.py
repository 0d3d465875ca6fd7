"""Fault injection: dropped connections, corrupted payloads, wrong or absent secrets."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from prfaas.transfer import frames as fr
from prfaas.transfer.errors import AuthError, ChecksumError, LinkError
from prfaas.transfer.protocol import ClientConnection
from prfaas.transfer.shaping import ShapingRelay, Tamper
from prfaas.transfer.tcp import (
    LayerPayload,
    ReceivedTransfer,
    ServerStats,
    TransferClient,
    TransferResult,
    TransferServer,
)

SECRET = b"fault-secret"
LAYERS = [random.Random(i).randbytes(400_000) for i in range(5)]


async def _run_through(
    relay_tamper: Tamper, **client_kw: Any
) -> tuple[TransferResult, ReceivedTransfer, ServerStats, int]:
    """Send LAYERS through a tampering relay; returns (result, received, stats, reconnects)."""
    got: asyncio.Future[ReceivedTransfer] = asyncio.get_running_loop().create_future()
    async with (
        TransferServer("127.0.0.1", 0, SECRET, got.set_result) as srv,
        ShapingRelay("127.0.0.1", 0, "127.0.0.1", srv.port, tamper=relay_tamper) as relay,
    ):
        kw = {"connections": 2, "chunk_bytes": 64 << 10, **client_kw}
        async with TransferClient("127.0.0.1", relay.port, SECRET, **kw) as client:
            result = await client.send("fault", [LayerPayload(i, d) for i, d in enumerate(LAYERS)])
            for _ in range(500):  # a dropped connection is re-opened in the background
                if client.live_connections == kw["connections"]:
                    break
                await asyncio.sleep(0.01)
            reconnects = client.reconnects
        received = await asyncio.wait_for(got, 10)
        return result, received, srv.stats, reconnects


def test_connection_killed_mid_transfer_resumes_and_completes() -> None:
    cut = {"done": False}

    def tamper(conn: int, offset: int, data: bytes) -> bytes | None:
        if conn == 0 and offset > 300_000 and not cut["done"]:
            cut["done"] = True
            return None  # the relay drops this connection mid-stream
        return data

    result, received, _, reconnects = asyncio.run(_run_through(tamper))
    assert cut["done"]
    assert reconnects == 1 and result.retransmitted_chunks >= 1
    assert result.verified
    assert [bytes(v) for v in received.layers] == LAYERS


class PayloadCorrupter:
    """Relay tamper hook that parses the stream (sans-IO decoder) and flips payload bytes only."""

    def __init__(self, limit: int | None = None, after: int = 0) -> None:
        self.decoders: dict[int, fr.FrameDecoder] = {}
        self.flipped = 0
        self.limit, self.after = limit, after

    def __call__(self, conn: int, offset: int, data: bytes) -> bytes:
        dec = self.decoders.setdefault(conn, fr.FrameDecoder())
        out, i = bytearray(data), 0
        while i < len(out):
            n = min(dec.want(), len(out) - i)
            if dec.in_payload:
                more = self.limit is None or self.flipped < self.limit
                if more and offset + i >= self.after:
                    out[i] ^= 0x01  # one flipped bit per payload piece that passes by
                    self.flipped += 1
                dec.consume_payload(n)
            else:
                dec.feed(bytes(out[i : i + n]))
            i += n
        return bytes(out)


def test_corrupted_payload_is_detected_and_resent() -> None:
    corrupter = PayloadCorrupter(limit=1, after=500_000)
    result, received, stats, _ = asyncio.run(_run_through(corrupter, connections=1))
    assert corrupter.flipped == 1
    assert stats.chunks_rejected == 1 and received.rejected_chunks == 1
    assert result.retransmitted_chunks == 1
    assert [bytes(v) for v in received.layers] == LAYERS


def test_persistent_corruption_aborts_with_a_clear_error() -> None:
    corrupter = PayloadCorrupter()
    with pytest.raises(ChecksumError, match="failed checksum verification 2 times"):
        asyncio.run(_run_through(corrupter, connections=1, max_chunk_attempts=2))
    assert corrupter.flipped >= 2


def test_a_restarted_receiver_fails_the_transfer_instead_of_hanging() -> None:
    async def main() -> None:
        first = TransferServer("127.0.0.1", 0, SECRET)
        await first.start()
        port = first.port
        client = TransferClient("127.0.0.1", port, SECRET, connections=1, max_reconnects=8)
        await client.connect()

        async def slow() -> AsyncIterator[LayerPayload]:
            yield LayerPayload(0, b"z" * 50_000)
            await asyncio.sleep(3600)
            yield LayerPayload(1, b"never")

        task = asyncio.ensure_future(client.send("doomed", slow()))
        for _ in range(300):
            await asyncio.sleep(0.01)
            if first.active_transfers:
                break
        await first.close()
        second = TransferServer("127.0.0.1", port, SECRET)
        await second.start()
        try:
            with pytest.raises(LinkError, match="restarted"):
                await asyncio.wait_for(task, 20)
        finally:
            await client.close()
            await second.close()

    asyncio.run(main())


def test_wrong_secret_is_rejected_before_any_payload() -> None:
    async def main() -> None:
        allocated: list[int] = []

        def alloc(tid: str, layer: int, n: int) -> memoryview:
            allocated.append(n)
            return memoryview(bytearray(n))

        completed: list[ReceivedTransfer] = []
        async with TransferServer("127.0.0.1", 0, SECRET, completed.append, allocator=alloc) as srv:
            client = TransferClient("127.0.0.1", srv.port, b"not-the-secret", connections=2)
            with pytest.raises(AuthError, match="server failed to prove the cluster secret"):
                await client.connect()
            await client.close()
            assert srv.stats.transfers_completed == 0 and allocated == [] and not completed

    asyncio.run(main())


async def _raw(port: int, payload: bytes) -> bytes:
    """Send raw bytes, return what the server answers before it closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


def test_unauthenticated_payload_is_refused_and_nothing_is_allocated() -> None:
    async def main() -> None:
        allocated: list[int] = []

        def alloc(tid: str, layer: int, n: int) -> memoryview:
            allocated.append(n)
            return memoryview(bytearray(n))

        async with TransferServer("127.0.0.1", 0, SECRET, allocator=alloc) as srv:
            # No handshake at all: BEGIN, LAYER and DATA straight away.
            frames = fr.encode(fr.Begin(1, 1, 100, 4096, 1, "evil")) + fr.encode(
                fr.Layer(1, 0, 100)
            )
            frames += fr.encode(fr.Data(1, 0, 0, 100, 0)) + bytes(100)
            answer = await _raw(srv.port, frames)
            err = fr.FrameDecoder().feed(answer)[0]
            assert isinstance(err, fr.Error) and "before the handshake" in err.message

            # A handshake with a forged AUTH, then payload.
            client = ClientConnection(b"guess", bytes(16), 0)
            forged = client.hello() + fr.encode(fr.Auth(bytes(32))) + frames
            answer = await _raw(srv.port, forged)
            events = fr.FrameDecoder().feed(answer)
            assert isinstance(events[0], fr.Challenge)
            assert isinstance(events[1], fr.Error) and "HMAC mismatch" in events[1].message
            assert srv.stats.auth_failures == 2 and srv.active_transfers == 0
        assert allocated == []

    asyncio.run(main())


def test_server_survives_garbage_and_keeps_serving() -> None:
    async def main() -> None:
        async with TransferServer("127.0.0.1", 0, SECRET) as srv:
            for seed in range(5):
                await _raw(srv.port, random.Random(seed).randbytes(3000))
            with socket.create_connection(("127.0.0.1", srv.port)) as s:
                s.sendall(b"PK")  # a partial header, then hang up
            async with TransferClient("127.0.0.1", srv.port, SECRET, connections=1) as client:
                res = await client.send("ok", [LayerPayload(0, b"y" * 9000)])
            assert res.verified

    asyncio.run(main())
