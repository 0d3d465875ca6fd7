"""Loopback transfers through the real asyncio TCP transport (correctness only, no timing)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from prfaas.transfer.errors import LinkError, TransferAborted
from prfaas.transfer.tcp import (
    LayerPayload,
    ReceivedTransfer,
    TransferClient,
    TransferServer,
)

SECRET = b"test-cluster-secret"


def _layers(n: int, size: int, seed: int = 0) -> list[bytes]:
    rnd = __import__("random").Random(seed)
    return [rnd.randbytes(size + 1000 * i) for i in range(n)]


async def _slowly(layers: list[bytes], delay_s: float = 0.0) -> AsyncIterator[LayerPayload]:
    for i, data in enumerate(layers):
        if delay_s:
            await asyncio.sleep(delay_s)
        yield LayerPayload(i, data)


def test_layers_arrive_verified_in_receiver_buffers() -> None:
    async def main() -> None:
        got: asyncio.Future[ReceivedTransfer] = asyncio.get_running_loop().create_future()
        allocated: list[tuple[str, int, int]] = []

        def alloc(tid: str, layer: int, nbytes: int) -> memoryview:
            allocated.append((tid, layer, nbytes))
            return memoryview(bytearray(nbytes))

        layers = _layers(6, 300_000)
        async with TransferServer("127.0.0.1", 0, SECRET, got.set_result, allocator=alloc) as srv:
            async with TransferClient(
                "127.0.0.1", srv.port, SECRET, connections=3, chunk_bytes=64 << 10
            ) as client:
                result = await client.send("req-1", _slowly(layers, 0.001))
                tel = client.telemetry()
            received = await got
        assert result.verified and result.total_bytes == sum(map(len, layers))
        assert result.layers == 6 and result.retransmitted_chunks == 0
        assert result.tail_seconds <= result.seconds
        assert received.transfer_id == "req-1"
        assert [bytes(v) for v in received.layers] == layers
        assert sorted(allocated) == [("req-1", i, len(d)) for i, d in enumerate(layers)]
        assert srv.stats.transfers_completed == 1 and srv.active_transfers == 0
        assert tel.connections == 3 and tel.in_flight_bytes == 0 and tel.queue_depth == 0
        assert tel.egress_gbps > 0

    asyncio.run(main())


def test_empty_layers_are_delivered_too() -> None:
    async def main() -> ReceivedTransfer:
        got: asyncio.Future[ReceivedTransfer] = asyncio.get_running_loop().create_future()
        async with (
            TransferServer("127.0.0.1", 0, SECRET, got.set_result) as srv,
            TransferClient("127.0.0.1", srv.port, SECRET, connections=2) as client,
        ):
            layers = [b"", b"abc" * 5000, b""]
            res = await client.send("empties", [LayerPayload(i, d) for i, d in enumerate(layers)])
            assert res.layers == 3 and res.total_bytes == 15000
            return await got

    received = asyncio.run(main())
    assert [bytes(v) for v in received.layers] == [b"", b"abc" * 5000, b""]


def test_concurrent_transfers_share_the_connections() -> None:
    async def main() -> None:
        done: dict[str, ReceivedTransfer] = {}
        async with (
            TransferServer(
                "127.0.0.1", 0, SECRET, lambda t: done.__setitem__(t.transfer_id, t)
            ) as srv,
            TransferClient(
                "127.0.0.1", srv.port, SECRET, connections=2, chunk_bytes=16 << 10
            ) as client,
        ):
            payloads = {f"r{i}": _layers(3, 50_000, seed=i) for i in range(4)}
            results = await asyncio.gather(
                *(
                    client.send(k, [LayerPayload(j, d) for j, d in enumerate(v)])
                    for k, v in payloads.items()
                )
            )
        assert {r.transfer_id for r in results} == set(payloads)
        for k, v in payloads.items():
            assert [bytes(x) for x in done[k].layers] == v

    asyncio.run(main())


def test_receiver_limit_aborts_the_transfer_with_a_clear_error() -> None:
    async def main() -> None:
        async with TransferServer("127.0.0.1", 0, SECRET, max_transfer_bytes=100_000) as srv:
            async with TransferClient("127.0.0.1", srv.port, SECRET, connections=1) as client:
                with pytest.raises(TransferAborted, match="exceeds the limit"):
                    await client.send(
                        "big", [LayerPayload(0, bytes(200_000))], expected_bytes=200_000
                    )
                with pytest.raises(TransferAborted, match="past 100000"):
                    await client.send("sneaky", [LayerPayload(0, bytes(200_000))])
                # The connection survives a refused transfer.
                ok = await client.send("small", [LayerPayload(0, bytes(10_000))])
            assert ok.verified and srv.active_transfers == 0

    asyncio.run(main())


def test_cancelling_a_send_aborts_it_on_the_receiver() -> None:
    async def main() -> None:
        completed: list[str] = []
        async with (
            TransferServer(
                "127.0.0.1", 0, SECRET, lambda t: completed.append(t.transfer_id)
            ) as srv,
            TransferClient("127.0.0.1", srv.port, SECRET, connections=2) as client,
        ):

            async def forever() -> AsyncIterator[LayerPayload]:
                yield LayerPayload(0, os.urandom(100_000))
                await asyncio.sleep(3600)
                yield LayerPayload(1, b"never")

            task = asyncio.ensure_future(client.send("stuck", forever()))
            for _ in range(200):
                await asyncio.sleep(0.01)
                if srv.active_transfers:
                    break
            assert srv.active_transfers == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            for _ in range(200):
                await asyncio.sleep(0.01)
                if not srv.active_transfers:
                    break
            assert srv.active_transfers == 0
            again = await client.send("after", [LayerPayload(0, b"x" * 5000)])
        assert again.verified and completed == ["after"]

    asyncio.run(main())


def test_producer_errors_abort_and_propagate() -> None:
    async def main() -> None:
        async def broken() -> AsyncIterator[LayerPayload]:
            yield LayerPayload(0, b"a" * 10_000)
            raise RuntimeError("prefill crashed")

        async with (
            TransferServer("127.0.0.1", 0, SECRET) as srv,
            TransferClient("127.0.0.1", srv.port, SECRET, connections=1) as client,
        ):
            with pytest.raises(RuntimeError, match="prefill crashed"):
                await client.send("crash", broken())
            with pytest.raises(ValueError, match="repeated"):
                await client.send("dup", [LayerPayload(0, b"a"), LayerPayload(0, b"b")])

    asyncio.run(main())


def test_connect_to_nothing_raises_and_send_needs_a_connection() -> None:
    async def main() -> None:
        client = TransferClient("127.0.0.1", 1, SECRET, connections=1, connect_timeout_s=2)
        with pytest.raises(OSError):
            await client.connect()
        with pytest.raises(LinkError, match="no connection"):
            await client.send("x", [LayerPayload(0, b"x")])

    asyncio.run(main())


def test_a_client_keeps_no_state_of_committed_transfers() -> None:
    # Every connection announced these transfers; none may remember them once committed.
    async def main() -> None:
        srv = TransferServer("127.0.0.1", 0, SECRET, lambda _: None)
        await srv.start()
        try:
            async with TransferClient(
                "127.0.0.1", srv.port, SECRET, connections=3, chunk_bytes=16 << 10
            ) as client:
                for i in range(20):
                    result = await client.send(f"r{i}", _slowly(_layers(4, 40_000, seed=i)))
                    assert result.verified
                states = [c.proto for c in client._conns if c is not None]
                unacked = [len(c.inflight) for c in client._conns if c is not None]
                in_flight = client.telemetry().in_flight_bytes
        finally:
            await srv.close()
        assert len(states) == 3
        assert all(not p._begun and not p._layers for p in states)
        # An ack may come after the commit (acks and the commit travel on different
        # connections): its chunk, and the payload it holds, must not stay in flight.
        assert unacked == [0, 0, 0] and in_flight == 0

    asyncio.run(main())


def test_an_ack_that_comes_after_the_commit_frees_its_chunk() -> None:
    # Acks and the commit travel on different connections, so a relay can deliver the commit
    # first. The late ack's chunk must leave the in-flight set (it pins the layer's payload and
    # counts against max_inflight_bytes), as must any chunk of a transfer that ended.
    from prfaas.transfer import frames as fr
    from prfaas.transfer.tracker import Chunk

    async def main() -> None:
        srv = TransferServer("127.0.0.1", 0, SECRET, lambda _: None)
        await srv.start()
        try:
            async with TransferClient("127.0.0.1", srv.port, SECRET, connections=2) as client:
                assert (await client.send("r0", _slowly(_layers(2, 10_000)))).verified
                conn = next(c for c in client._conns if c is not None)
                late = Chunk(0, 1, 0, memoryview(bytes(4096)))  # transfer 0 is over
                conn.inflight[(0, 1, 0)] = late
                client._inflight_bytes += 4096
                client._on_frame(conn, fr.Ack(0, 1, 0, 4096))
                assert not conn.inflight and client.telemetry().in_flight_bytes == 0
        finally:
            await srv.close()

    asyncio.run(main())
