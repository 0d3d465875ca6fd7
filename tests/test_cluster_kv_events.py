"""KV events in vLLM's wire format: framing, replay of missed batches, a late subscriber."""

from __future__ import annotations

import asyncio

import msgspec
import zmq.asyncio

from prfaas.cluster.kv_events import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    KvEventPublisher,
    KvEventSubscriber,
    decode_batch,
    encode_batch,
)


def _stored(i: int) -> BlockStored:
    return BlockStored([1000 + i], 1000 + i - 1 if i else None, list(range(16)), 16, None, "GPU",
                       None)


def test_the_payload_is_vllms_shape() -> None:
    payload = encode_batch([_stored(0), BlockRemoved([7], "GPU"), AllBlocksCleared()], ts=1.5)
    raw = msgspec.msgpack.decode(payload)
    assert raw[0] == 1.5 and raw[2] == 0  # [ts, events, data_parallel_rank]
    assert raw[1][0]["type"] == "BlockStored" and raw[1][0]["block_hashes"] == [1000]
    assert raw[1][0]["parent_block_hash"] is None and raw[1][0]["block_size"] == 16
    assert raw[1][0]["lora_id"] is None and raw[1][0]["medium"] == "GPU"
    assert raw[1][1] == {"type": "BlockRemoved", "block_hashes": [7], "medium": "GPU"}
    assert raw[1][2] == {"type": "AllBlocksCleared"}
    assert decode_batch(payload).events[1] == BlockRemoved([7], "GPU")
    digest = encode_batch([BlockRemoved([b"\x01" * 32], None)])  # vLLM's default: bytes digests
    assert decode_batch(digest).events == [BlockRemoved([b"\x01" * 32], None)]


def test_a_late_subscriber_replays_what_it_missed_in_order() -> None:
    async def run() -> tuple[list[int], int]:
        ctx = zmq.asyncio.Context()
        pub = KvEventPublisher(ctx, "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", topic="kv@n0")
        pub.start()
        for i in range(5):  # nobody listens yet: PUB drops these
            await pub.publish([_stored(i)])
        got: list[int] = []
        sub = KvEventSubscriber(ctx, pub.endpoint, pub.replay_endpoint,
                                lambda seq, _payload: got.append(seq), topic="kv@n0")
        sub.start()
        await asyncio.sleep(0.3)  # the SUB connection settles (slow-joiner)
        for i in range(5, 8):
            await pub.publish([_stored(i)])
            await asyncio.sleep(0.02)
        for _ in range(50):
            if len(got) >= 8:
                break
            await asyncio.sleep(0.05)
        replayed = sub.replayed
        await sub.close()
        await pub.close()
        ctx.term()
        return got, replayed

    got, replayed = asyncio.run(run())
    assert got == list(range(8))
    assert replayed >= 5


def test_a_gap_older_than_the_buffer_is_counted_as_lost() -> None:
    async def run() -> tuple[list[int], int]:
        ctx = zmq.asyncio.Context()
        pub = KvEventPublisher(ctx, "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", buffer=2)
        pub.start()
        for i in range(6):
            await pub.publish([_stored(i)])
        got: list[int] = []
        sub = KvEventSubscriber(ctx, pub.endpoint, pub.replay_endpoint,
                                lambda seq, _p: got.append(seq))
        await sub.fill_gap(6)  # the buffer holds only seq 4 and 5
        lost = sub.lost
        await sub.close()
        await pub.close()
        ctx.term()
        return got, lost

    got, lost = asyncio.run(run())
    assert got == [4, 5] and lost == 4


def test_the_replay_buffer_is_bounded_in_bytes_too() -> None:
    # A long prompt's batch names ~100 blocks: a count bound alone let a node's buffer hold
    # ~100 MB. The byte bound keeps the newest batches that fit (always the newest one).
    async def run() -> tuple[list[int], int, int]:
        ctx = zmq.asyncio.Context()
        one = len(encode_batch([_stored(0)]))
        pub = KvEventPublisher(ctx, "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", buffer=100,
                               buffer_bytes=3 * one + one // 2)
        pub.start()
        for i in range(10):
            await pub.publish([_stored(i)])
        held = [seq for seq, _ in pub.buffer]
        got: list[int] = []
        sub = KvEventSubscriber(ctx, pub.endpoint, pub.replay_endpoint,
                                lambda seq, _p: got.append(seq))
        await sub.fill_gap(10)
        lost = sub.lost
        tiny = KvEventPublisher(ctx, "tcp://127.0.0.1:*", None, buffer_bytes=1)
        await tiny.publish([_stored(1)])
        kept = len(tiny.buffer)
        await sub.close()
        await pub.close()
        await tiny.close()
        ctx.term()
        return held, lost, kept

    held, lost, kept = asyncio.run(run())
    assert held == [7, 8, 9] and lost == 7
    assert kept == 1  # a batch larger than the bound still waits for replays until the next


def test_curve_streams_admit_registered_keys_and_a_refused_handshake_needs_a_new_socket() -> None:
    """With CURVE, only client keys the ZAP handler admits get batches (and replays). A client
    refused once is not retried by ZMQ even after its key is admitted: the router's watchdog
    (router/cluster_members.py) opens a new subscriber, resuming at the sequence it had."""
    from zmq.auth.asyncio import AsyncioAuthenticator

    async def run() -> None:
        ctx = zmq.asyncio.Context()
        admitted: set[bytes] = set()

        class Keys:
            def callback(self, _domain: str, key: bytes) -> bool:
                return key in admitted

        auth = AsyncioAuthenticator(ctx)
        auth.start()
        auth.configure_curve_callback("*", Keys())
        server_public, server_secret = zmq.curve_keypair()
        public, secret = zmq.curve_keypair()
        pub = KvEventPublisher(ctx, "tcp://127.0.0.1:0", "tcp://127.0.0.1:0", topic="kv@n",
                               curve_secret=server_secret)
        pub.start()
        got: list[int] = []
        curve = (server_public, public, secret)

        def subscriber() -> KvEventSubscriber:
            s = KvEventSubscriber(ctx, pub.endpoint, pub.replay_endpoint,
                                  lambda seq, _p: got.append(seq), topic="kv@n", curve=curve)
            s.start()
            return s

        refused = subscriber()
        for i in range(5):
            await pub.publish([_stored(i)])
            await asyncio.sleep(0.1)
        admitted.add(public)
        for i in range(5, 10):
            await pub.publish([_stored(i)])
            await asyncio.sleep(0.1)
        assert got == []  # refused once: never retried
        await refused.close()
        fresh = subscriber()
        await asyncio.sleep(0.3)  # connected and admitted
        await pub.publish([_stored(10)])
        for _ in range(40):
            if got == list(range(11)):
                break
            await asyncio.sleep(0.05)
        assert got == list(range(11))  # the gap 0..9 came from the (CURVE) replay socket
        await fresh.close()
        await pub.close()
        auth.stop()
        ctx.destroy(linger=0)

    asyncio.run(run())
