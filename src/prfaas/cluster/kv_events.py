"""KV-cache events in vLLM's wire format: a ZMQ publisher with a replay buffer, and a subscriber
that fills sequence gaps by replay.

Wire format (vLLM `vllm/distributed/kv_events.py`, as of vLLM 0.32): PUB frames
`[topic, seq as 8-byte big-endian, msgpack payload]`; the payload is the array
`[timestamp, events, data_parallel_rank]`; each event is a map tagged by `type`: `BlockStored`,
`BlockRemoved` or `AllBlocksCleared`. A ROUTER socket serves replays: a request `[b"", start_seq]`
is answered with every buffered `[b"", topic, seq, payload]` from start_seq on, then
`[b"", b"", -1 as 8 bytes, b""]`. A prfaas worker publishes its prefix pool's changes this way, so
the router's consumer is the same for prfaas workers and real vLLM engines.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import zmq
import zmq.asyncio

END_SEQ = (-1).to_bytes(8, "big", signed=True)


# vLLM's ExternalBlockHash is bytes (a digest) or int (hash_block_size mode); prfaas sends ints.
BlockHash = int | bytes


class BlockStored(msgspec.Struct, tag=True, omit_defaults=True):
    block_hashes: list[BlockHash]
    parent_block_hash: BlockHash | None
    token_ids: list[int]
    block_size: int
    lora_id: int | None  # required on the wire (vLLM encodes them even when None)
    medium: str | None
    lora_name: str | None
    group_idx: int | None = None
    kv_cache_spec_kind: str | None = None


class BlockRemoved(msgspec.Struct, tag=True, omit_defaults=True):
    block_hashes: list[BlockHash]
    medium: str | None
    group_idx: int | None = None


class AllBlocksCleared(msgspec.Struct, tag=True, omit_defaults=True):
    pass


KvEvent = BlockStored | BlockRemoved | AllBlocksCleared


class EventBatch(msgspec.Struct, array_like=True, omit_defaults=True):
    ts: float
    events: list[KvEvent]
    data_parallel_rank: int | None = None


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(EventBatch)


def encode_batch(events: Sequence[KvEvent], ts: float | None = None, dp_rank: int = 0) -> bytes:
    return _ENCODER.encode(EventBatch(time.time() if ts is None else ts, list(events), dp_rank))


def decode_batch(payload: bytes) -> EventBatch:
    """Our own typed decoding (the router's tolerant decoder accepts older wire forms too)."""
    return _DECODER.decode(payload)


# CURVE keys of one side: (server public key, client public key, client secret key), Z85 bytes.
ClientCurve = tuple[bytes, bytes, bytes]


def _curve_server(sock: zmq.asyncio.Socket, secret: bytes | None) -> None:
    if secret is not None:  # clients are checked by the context's ZAP handler
        sock.curve_server = True
        sock.curve_secretkey = secret


def _curve_client(sock: zmq.asyncio.Socket, curve: ClientCurve | None) -> None:
    if curve is not None:
        sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = curve


# The replay buffer's byte bound. vLLM keeps 10,000 batches; ours are one per request and a
# long prompt's batch names ~100 blocks (~10 KB), so 10,000 held ~100 MB per node, filled over
# hours (the soak's slow growth). A consumer that needs older batches counts them as lost: its
# index misses those blocks (fewer cache hits), never serves a wrong one.
REPLAY_BUFFER_BYTES = 16 << 20


class KvEventPublisher:
    """Binds PUB (and ROUTER for replays); `publish` numbers batches 0, 1, 2, ... per publisher
    and keeps the newest `buffer` of them, at most `buffer_bytes` in all, for replays.
    With `curve_secret` both sockets speak CURVE (encrypted; clients admitted by ZAP)."""

    def __init__(self, ctx: zmq.asyncio.Context, endpoint: str, replay_endpoint: str | None,
                 topic: str = "", buffer: int = 10_000, curve_secret: bytes | None = None,
                 buffer_bytes: int = REPLAY_BUFFER_BYTES) -> None:
        self.topic = topic.encode()
        self.pub = ctx.socket(zmq.PUB)
        _curve_server(self.pub, curve_secret)
        self.pub.bind(endpoint)
        self.endpoint = self.pub.getsockopt_string(zmq.LAST_ENDPOINT)
        self.replay: zmq.asyncio.Socket | None = None
        self.replay_endpoint = ""
        if replay_endpoint is not None:
            self.replay = ctx.socket(zmq.ROUTER)
            _curve_server(self.replay, curve_secret)
            self.replay.bind(replay_endpoint)
            self.replay_endpoint = self.replay.getsockopt_string(zmq.LAST_ENDPOINT)
        self.buffer: deque[tuple[int, bytes]] = deque(maxlen=buffer)
        self.buffer_bytes = buffer_bytes
        self._buffered = 0  # payload bytes in the buffer
        self.next_seq = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.replay is not None:
            self._task = asyncio.create_task(self._serve_replays(), name="kv-event replay")

    async def publish(self, events: Sequence[KvEvent]) -> int:
        seq, self.next_seq = self.next_seq, self.next_seq + 1
        payload = encode_batch(events)
        self._keep(seq, payload)
        await self.pub.send_multipart((self.topic, seq.to_bytes(8, "big"), payload))
        return seq

    def _keep(self, seq: int, payload: bytes) -> None:
        buf = self.buffer
        if len(buf) == buf.maxlen:
            self._buffered -= len(buf[0][1])
        buf.append((seq, payload))
        self._buffered += len(payload)
        while self._buffered > self.buffer_bytes and len(buf) > 1:  # the newest always stays
            self._buffered -= len(buf.popleft()[1])

    async def send_other(self, topic: bytes, payload: bytes) -> None:
        """A message under another topic (telemetry): not numbered, not replayed."""
        await self.pub.send_multipart((topic, bytes(8), payload))

    async def _serve_replays(self) -> None:
        assert self.replay is not None
        while True:
            frame = await self.replay.recv_multipart()
            if len(frame) != 3 or len(frame[2]) != 8:
                continue  # not a replay request: ignore, as vLLM does
            client, _, start = frame
            first = int.from_bytes(start, "big")
            for seq, payload in list(self.buffer):
                if seq >= first:
                    await self.replay.send_multipart(
                        (client, b"", self.topic, seq.to_bytes(8, "big"), payload))
            await self.replay.send_multipart((client, b"", b"", END_SEQ, b""))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.pub.close(linger=0)
        if self.replay is not None:
            self.replay.close(linger=0)


class KvEventSubscriber:
    """Delivers each batch exactly once and in order to `on_batch(seq, payload)`.

    A batch whose sequence number skips ahead (a late join, a dropped message under the PUB
    socket's high-water mark) triggers a replay of the missing range before it is delivered.
    `replayed` counts batches recovered that way; `lost` those the publisher no longer held.
    """

    def __init__(self, ctx: zmq.asyncio.Context, endpoint: str, replay_endpoint: str,
                 on_batch: Callable[[int, bytes], Any], topic: str = "",
                 start_seq: int = 0, *, other: tuple[bytes, Callable[[bytes], Any]] | None = None,
                 curve: ClientCurve | None = None) -> None:
        self.ctx = ctx
        self.topic = topic.encode()
        self.curve = curve
        self.sub = ctx.socket(zmq.SUB)
        _curve_client(self.sub, curve)
        self.sub.setsockopt(zmq.SUBSCRIBE, self.topic)
        self.other = other  # (topic, callback): messages of a second topic, passed through as-is
        if other is not None:
            self.sub.setsockopt(zmq.SUBSCRIBE, other[0])
        self.sub.connect(endpoint)
        self.replay_endpoint = replay_endpoint
        self.on_batch = on_batch
        self.next_seq = start_seq
        self.replayed = 0
        self.lost = 0
        self._replaying = asyncio.Lock()  # the follower and catch_up callers take turns
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name="kv-event subscriber")

    async def _follow(self) -> None:
        while True:
            topic, seq_bytes, payload = await self.sub.recv_multipart()
            if self.other is not None and topic == self.other[0]:
                self.other[1](payload)
                continue
            seq = int.from_bytes(seq_bytes, "big")
            if seq > self.next_seq:
                await self.catch_up(seq)
            if seq == self.next_seq:
                self._deliver(seq, payload)

    async def catch_up(self, upto: int) -> None:
        """Replay what is missing below `upto` (e.g. the publisher's next sequence number, as
        its telemetry reports it: an idle publisher's last batch is not lost either)."""
        async with self._replaying:
            if self.next_seq < upto:
                await self.fill_gap(upto)

    async def replay_all(self) -> None:
        """Deliver again all the publisher still holds (after the consumer dropped its state)."""
        async with self._replaying:
            upto, self.next_seq = self.next_seq, 0
            await self.fill_gap(upto)

    def _deliver(self, seq: int, payload: bytes) -> None:
        self.on_batch(seq, payload)
        self.next_seq = seq + 1

    async def fill_gap(self, upto: int, timeout_s: float = 2.0) -> None:
        """Replay [next_seq, upto) from the publisher's buffer."""
        req = self.ctx.socket(zmq.DEALER)
        _curve_client(req, self.curve)
        req.connect(self.replay_endpoint)
        try:
            await req.send_multipart((b"", self.next_seq.to_bytes(8, "big")))
            while True:
                async with asyncio.timeout(timeout_s):
                    _, _topic, seq_bytes, payload = await req.recv_multipart()
                if seq_bytes == END_SEQ:
                    break
                seq = int.from_bytes(seq_bytes, "big")
                if self.next_seq <= seq < upto:
                    if seq > self.next_seq:
                        self.lost += seq - self.next_seq  # older than the publisher's buffer
                    self._deliver(seq, payload)
                    self.replayed += 1
        except TimeoutError:
            pass  # publisher gone: what it had is lost; the batch that arrived is still applied
        finally:
            req.close(linger=0)
        if self.next_seq < upto:
            self.lost += upto - self.next_seq
            self.next_seq = upto

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sub.close(linger=0)
