"""Sending side of the KV transfer engine: N striped connections, layers sent as produced."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

from prfaas.transfer import checksum
from prfaas.transfer import frames as fr
from prfaas.transfer.errors import ChecksumError, LinkError, ProtocolError, TransferAborted
from prfaas.transfer.payloads import LayerPayload, TransferResult
from prfaas.transfer.pool import ConnectionPool, _Commit, _Conn, _Outgoing
from prfaas.transfer.sockio import send_buffers
from prfaas.transfer.tlsio import sendall
from prfaas.transfer.tracker import Chunk, SendTracker

Layers = AsyncIterable[LayerPayload] | Iterable[LayerPayload]


async def _aiter(layers: Layers) -> AsyncIterator[LayerPayload]:
    if isinstance(layers, AsyncIterable):
        async for item in layers:
            yield item
    else:
        for item in layers:
            yield item


class TransferClient(ConnectionPool):
    """Sends transfers to one `TransferServer` over `connections` authenticated TCP connections.

    Chunks of every layer go to whichever connection is free (striping by work stealing), at most
    `max_inflight_bytes` unacknowledged. A dropped connection is re-opened (up to `max_reconnects`
    times in a row) and its unacknowledged chunks are re-sent on any live connection.
    Constructor arguments are documented on `ConnectionPool`.
    """

    async def __aenter__(self) -> TransferClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- data path -------------------------------------------------------------------------
    def _try_take(self) -> Chunk | _Commit | None:
        while self._queue:
            item = self._queue[0]
            out = self._active.get(item.xid)
            if isinstance(item, Chunk):
                if out is not None and not item.acked:
                    n = len(item.view)
                    if self._inflight_bytes and self._inflight_bytes + n > self.max_inflight_bytes:
                        return None
                self._queue.popleft()
                self._queued_bytes -= len(item.view)
                if out is None or item.acked:
                    continue
            else:
                self._queue.popleft()
                if out is None or out.commit_sent or out.done.done():
                    continue
            self._wake.set()  # queue room for producers
            return item
        return None

    async def _writer(self, conn: _Conn) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                while conn.control:
                    await sendall(loop, conn.sock, conn.control.popleft())
                item = self._try_take()
                if item is None:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                await self._send_item(loop, conn, item)
        except asyncio.CancelledError:
            raise
        except (OSError, ProtocolError) as exc:
            self._fail(conn, exc)

    async def _send_item(
        self, loop: asyncio.AbstractEventLoop, conn: _Conn, item: Chunk | _Commit
    ) -> None:
        out = self._active[item.xid]
        tracker = out.tracker
        if isinstance(item, _Commit):
            assert tracker.commit is not None
            out.commit_sent = True
            head = conn.proto.preamble(tracker.begin, None)
            for layer in tracker.layers.values():
                if layer.nbytes == 0:  # no DATA will announce an empty layer: do it here
                    head += conn.proto.preamble(tracker.begin, layer)
            head += fr.encode(tracker.commit)
            await sendall(loop, conn.sock, head)
            return
        if not conn.inflight:
            conn.last_progress = time.monotonic()
            if not self._inflight_bytes:
                self.monitor.on_busy(conn.last_progress)
        # In flight from here on: if the connection dies while we wait, the chunk is requeued.
        item.attempts += 1
        item.conn = conn.index
        conn.inflight[(item.xid, item.layer, item.offset)] = item
        self._inflight_bytes += len(item.view)
        if item.checksum is None:
            # Hash right before sending: the kernel then copies the chunk from a warm cache
            # (measured faster than hashing ahead, inline or in a helper thread).
            item.checksum = checksum.one_shot(tracker.begin.checksum_alg)(item.view)
        data = fr.Data(item.xid, item.layer, item.offset, len(item.view), item.checksum)
        head = conn.proto.preamble(tracker.begin, tracker.layers[item.layer]) + fr.encode(data)
        await send_buffers(loop, conn.sock, [memoryview(head), item.view])

    def _requeue(self, chunk: Chunk, front: bool = False) -> None:
        if chunk.xid not in self._active or chunk.acked:
            return
        if front:
            self._queue.appendleft(chunk)
        else:
            self._queue.append(chunk)
        self._queued_bytes += len(chunk.view)
        self._wake.set()

    async def _reader(self, conn: _Conn) -> None:
        try:
            while True:
                frame = await conn.reader.read_frame()
                conn.proto.receive(frame)
                self._on_frame(conn, frame)
        except asyncio.CancelledError:
            raise
        except (OSError, ProtocolError) as exc:
            self._fail(conn, exc)

    def _on_frame(self, conn: _Conn, frame: fr.Frame) -> None:
        out = self._active.get(getattr(frame, "xid", -1))
        if out is None:  # a late answer about a finished or abandoned transfer
            if isinstance(frame, fr.Ack | fr.Nack):  # (acks and the commit may cross)
                self._drop_inflight(conn, frame.xid)
            return
        if isinstance(frame, fr.Ack):
            chunk = conn.inflight.pop((frame.xid, frame.layer, frame.offset), None)
            if chunk is not None:
                self._inflight_bytes -= len(chunk.view)
            if out.tracker.ack(frame) is not None:
                now = time.monotonic()
                conn.last_progress = now
                self.monitor.on_acked(frame.length, now)
                self._wake.set()
        elif isinstance(frame, fr.Nack):
            chunk = conn.inflight.pop((frame.xid, frame.layer, frame.offset), None)
            if chunk is not None:
                self._inflight_bytes -= len(chunk.view)
            try:
                resend = out.tracker.nack(frame)
            except ChecksumError as exc:  # it keeps arriving corrupted: give up on this transfer
                if not out.done.done():
                    out.done.set_exception(exc)
                return
            self.chunk_retransmits += 1
            if frame.reason == fr.NACK_BUSY:  # still landing from a dead connection: wait a bit
                asyncio.get_running_loop().call_later(0.05, self._requeue, resend)
            else:
                self._requeue(resend, front=True)
        elif isinstance(frame, fr.Committed) and not out.done.done():
            out.done.set_result(frame.total_bytes)
        elif isinstance(frame, fr.Abort) and not out.done.done():
            name = out.tracker.begin.name
            out.done.set_exception(TransferAborted(f"receiver aborted {name!r}: {frame.reason}"))

    # ---- public API ------------------------------------------------------------------------
    async def send(
        self,
        transfer_id: str,
        layers: AsyncIterable[LayerPayload] | Iterable[LayerPayload],
        *,
        expected_layers: int = 0,
        expected_bytes: int = 0,
        timeout_s: float | None = None,
    ) -> TransferResult:
        """Send layers as they arrive; returns once the receiver verified and committed them all.

        `expected_layers`/`expected_bytes` (0 = unknown) let the receiver check limits up front.
        Cancelling the call aborts the transfer on the receiver too.
        """
        if self._closed or not (self.live_connections or self._reconnecting):
            raise LinkError(f"no connection to {self.host}:{self.port} (call connect() first)")
        xid, self._next_xid = self._next_xid, self._next_xid + 1
        alg = checksum.pick(self._mask, self.checksum_alg)
        begin = fr.Begin(xid, expected_layers, expected_bytes, self.chunk_bytes, alg, transfer_id)
        tracker = SendTracker(begin, max_attempts=self.max_chunk_attempts)
        out = _Outgoing(tracker, asyncio.get_running_loop().create_future())
        self._active[xid] = out
        reconnects0 = self.reconnects
        try:
            async with asyncio.timeout(timeout_s):
                await self._produce(out, layers)
                if not out.done.done():
                    tracker.finish()
                    self._queue.append(_Commit(xid))
                    self._wake.set()
                await out.done
        except BaseException as exc:
            self._abandon(out, exc)
            raise
        finally:
            self._active.pop(xid, None)  # the writers skip its queued chunks from now on
            for c in self._conns:
                if c is not None:
                    c.proto.forget(xid)  # else every transfer stays in each connection's state
                    self._drop_inflight(c, xid)  # chunks whose ack had not come back yet
        end = time.monotonic()
        return TransferResult(
            transfer_id=transfer_id,
            total_bytes=tracker.total_bytes,
            layers=len(tracker.layers),
            seconds=end - out.t_first,
            tail_seconds=end - out.t_last,
            checksum=checksum.NAMES[alg],
            verified=True,
            retransmitted_chunks=tracker.retransmits,
            reconnects=self.reconnects - reconnects0,
        )

    async def _produce(self, out: _Outgoing, layers: Layers) -> None:
        """Pull the producer's layers; stop early (without waiting on it) if the transfer fails."""
        feed = asyncio.ensure_future(self._feed(out, layers))
        waiters: list[asyncio.Future[Any]] = [feed, out.done]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not feed.done():
                feed.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feed
        if not feed.cancelled():
            feed.result()  # the producer's own exception, if it raised

    async def _feed(self, out: _Outgoing, layers: Layers) -> None:
        async for payload in _aiter(layers):
            now = time.monotonic()
            out.t_first = out.t_first or now
            out.t_last = now
            chunks = out.tracker.add_layer(payload.index, memoryview(payload.data))
            self._queue.extend(chunks)
            self._queued_bytes += sum(len(ch.view) for ch in chunks)
            self._wake.set()
            while self._queued_bytes > self.max_queued_bytes and not out.done.done():
                self._wake.clear()
                await self._wake.wait()
            if out.done.done():
                return  # failed early (receiver abort, link loss): stop pulling layers

    def _drop_inflight(self, conn: _Conn, xid: int) -> None:
        """Forget the unacknowledged chunks of a transfer that ended (they pin its payload)."""
        for key in [k for k in conn.inflight if k[0] == xid]:
            self._inflight_bytes -= len(conn.inflight.pop(key).view)

    def _abandon(self, out: _Outgoing, exc: BaseException) -> None:
        """Forget a failed or cancelled transfer here and tell the receiver (via each writer)."""
        xid = out.tracker.begin.xid
        if out.done.done() and not out.done.cancelled():
            out.done.exception()  # mark retrieved
        else:
            out.done.cancel()
        abort = fr.encode(fr.Abort(xid, f"sender gave up: {type(exc).__name__}: {exc}"))
        for c in self._conns:
            if c is None or not c.alive:
                continue
            self._drop_inflight(c, xid)
            c.control.append(abort)
            c.proto.forget(xid)
        self._wake.set()
        with contextlib.suppress(KeyError):
            del self._active[xid]
