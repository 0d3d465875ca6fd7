"""Receiving side of the KV transfer engine: authenticated connections, chunks land in place."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from prfaas.transfer import checksum
from prfaas.transfer import frames as fr
from prfaas.transfer.errors import AuthError, ProtocolError, SequenceError
from prfaas.transfer.incoming import (
    Allocator,
    Incoming,
    Key,
    Reject,
    ServerStats,
    default_allocator,
)
from prfaas.transfer.linger import refuse
from prfaas.transfer.payloads import ReceivedTransfer
from prfaas.transfer.protocol import ERR_AUTH, ERR_PROTOCOL, READY, ServerConnection
from prfaas.transfer.sockio import Reader, send_frames, tune
from prfaas.transfer.tlsio import handshake, starts_with_tls
from prfaas.transfer.tracker import BUSY, DUPLICATE, NEW, ReceiveTracker

log = logging.getLogger(__name__)

OnComplete = Callable[[ReceivedTransfer], Awaitable[None] | None]


class TransferServer:
    """Accepts authenticated transfers; calls `on_transfer_complete` with verified buffers.

    `allocator(transfer_id, layer, nbytes)` returns the writable buffer a layer lands in (default:
    a fresh bytearray); pass one that hands out views of preallocated memory to avoid allocation.
    """

    def __init__(
        self,
        host: str,
        port: int,
        secret: bytes,
        on_transfer_complete: OnComplete | None = None,
        *,
        allocator: Allocator = default_allocator,
        max_transfer_bytes: int = 16 << 30,
        max_active_transfers: int = 256,
        handshake_timeout_s: float = 10.0,
        stall_timeout_s: float = 30.0,
        transfer_timeout_s: float = 600.0,
        tls: ssl.SSLContext | None = None,
        allow_plain: bool = True,
    ) -> None:
        self.host, self.port = host, port
        # tls: accept TLS connections (client certificates from the cluster CA required);
        # allow_plain: also accept plain ones (the HMAC handshake still authenticates them).
        self.tls, self.allow_plain = tls, allow_plain
        self._secret = secret
        self._on_complete = on_transfer_complete
        self._allocator = allocator
        self.max_transfer_bytes = max_transfer_bytes
        self.max_active_transfers = max_active_transfers
        self.handshake_timeout_s = handshake_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.transfer_timeout_s = transfer_timeout_s
        self.stats = ServerStats()
        self._transfers: dict[Key, Incoming] = {}
        self._completed: OrderedDict[Key, int] = OrderedDict()
        self._scratch = memoryview(bytearray(0))
        self._listener: socket.socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._instance = int.from_bytes(os.urandom(8), "big")

    @property
    def active_transfers(self) -> int:
        return len(self._transfers)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        ls = socket.socket(family, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((self.host, self.port))
        ls.listen(128)
        ls.setblocking(False)
        self._listener = ls
        self.port = ls.getsockname()[1]
        self._spawn(self._accept_loop(loop, ls))
        self._spawn(self._reaper())

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._transfers.clear()

    async def __aenter__(self) -> TransferServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept_loop(self, loop: asyncio.AbstractEventLoop, ls: socket.socket) -> None:
        while True:
            sock, _ = await loop.sock_accept(ls)
            tune(sock)
            self.stats.connections += 1
            self._spawn(self._serve(loop, sock))

    async def _reaper(self) -> None:
        """Drop incomplete transfers nobody has touched for transfer_timeout_s."""
        while True:
            await asyncio.sleep(min(5.0, self.transfer_timeout_s / 4))
            cutoff = time.monotonic() - self.transfer_timeout_s
            for key in [k for k, v in self._transfers.items() if v.last_activity < cutoff]:
                log.warning("dropping stalled transfer %r", self._transfers[key].tracker.name)
                del self._transfers[key]

    async def _serve(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        conn = ServerConnection(
            self._secret,
            checksum_mask=checksum.supported(),
            instance=self._instance,
            keep_transfers=2 * self.max_active_transfers,  # any transfer still active stays
        )
        try:
            async with asyncio.timeout(self.handshake_timeout_s):
                sock = await self._secure(loop, sock)
                reader = Reader(loop, sock)
                while conn.state != READY:
                    frame = await reader.read_frame()
                    await send_frames(loop, sock, conn.receive(frame))
            last_data = 0
            while True:
                frame = await reader.read_frame(guess_after=last_data)
                conn.receive(frame)
                await self._dispatch(reader, conn, frame)
                last_data = frame.length if isinstance(frame, fr.Data) else 0
        except AuthError as exc:
            self.stats.auth_failures += 1
            await refuse(loop, sock, ERR_AUTH, str(exc))
        except ProtocolError as exc:
            self.stats.protocol_errors += 1
            await refuse(loop, sock, ERR_PROTOCOL, str(exc))
        except (OSError, TimeoutError) as exc:
            log.debug("transfer connection ended: %s", exc)
        finally:
            sock.close()

    async def _secure(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> socket.socket:
        """The connection as TLS (if it opens with a ClientHello) or plain (if allowed)."""
        if self.tls is not None and await starts_with_tls(loop, sock):
            return await handshake(loop, sock, self.tls, server_side=True)
        if not self.allow_plain:
            self.stats.auth_failures += 1
            raise ConnectionRefusedError("plain connection refused: this endpoint requires TLS")
        return sock

    async def _dispatch(self, reader: Reader, conn: ServerConnection, frame: fr.Frame) -> None:
        loop, sock = reader.loop, reader.sock
        key = (conn.session_id, getattr(frame, "xid", -1))
        inc = self._transfers.get(key)
        if inc is not None:
            inc.last_activity = time.monotonic()
        try:
            if isinstance(frame, fr.Data):
                await self._on_data(reader, key, inc, frame)
            elif isinstance(frame, fr.Begin):
                self._on_begin(key, frame)
            elif isinstance(frame, fr.Layer) and inc is not None:
                self._on_layer(inc, frame)
            elif isinstance(frame, fr.Commit):
                if key in self._completed:
                    done = fr.Committed(frame.xid, self._completed[key])
                    await send_frames(loop, sock, fr.encode(done))
                elif inc is not None:
                    inc.tracker.on_commit(frame)
                    await self._maybe_finish(loop, sock, key, inc)
            elif isinstance(frame, fr.Abort):
                self._transfers.pop(key, None)
        except (Reject, SequenceError) as exc:
            # The transfer is refused, the connection stays: other transfers may share it.
            self._transfers.pop(key, None)
            log.warning("transfer %s refused: %s", key[1], exc)
            await send_frames(loop, sock, fr.encode(fr.Abort(key[1], str(exc))))

    def _on_begin(self, key: Key, begin: fr.Begin) -> None:
        if key in self._completed:
            return
        if not checksum.supported() & (1 << begin.checksum_alg):
            raise Reject(f"unsupported checksum algorithm {begin.checksum_alg}")
        inc = self._transfers.get(key)
        if inc is not None:
            inc.tracker.check_begin(begin)
            return
        if len(self._transfers) >= self.max_active_transfers:
            raise Reject(f"more than {self.max_active_transfers} concurrent transfers")
        if begin.total_bytes > self.max_transfer_bytes:
            raise Reject(f"{begin.total_bytes} B exceeds the limit of {self.max_transfer_bytes} B")
        now = time.monotonic()
        tracker = ReceiveTracker(begin, max_transfer_bytes=self.max_transfer_bytes)
        self._transfers[key] = Incoming(tracker, now, now)

    def _on_layer(self, inc: Incoming, layer: fr.Layer) -> None:
        if inc.tracker.declare_layer(layer):
            buf = self._allocator(inc.tracker.name, layer.layer, layer.nbytes)
            if len(buf) != layer.nbytes or buf.readonly:
                raise Reject(f"allocator gave a bad buffer for layer {layer.layer}")
            inc.buffers[layer.layer] = buf.cast("B") if buf.format != "B" else buf

    async def _on_data(
        self, reader: Reader, key: Key, inc: Incoming | None, data: fr.Data
    ) -> None:
        loop, sock = reader.loop, reader.sock
        hasher: checksum.Hasher | None = None
        dest = self._scratch_view(data.length)
        reject, plan = "", DUPLICATE
        if inc is not None:
            try:
                plan = inc.tracker.plan_chunk(data)
            except SequenceError as exc:
                reject = str(exc)
            if plan == NEW:
                dest = inc.buffers[data.layer][data.offset : data.offset + data.length]
                hasher = checksum.new_hasher(inc.tracker.begin.checksum_alg)
        try:
            async with asyncio.timeout(self.stall_timeout_s) as tmo:
                # Duplicates, busy chunks and chunks of unknown transfers are drained into
                # scratch space: the stream stays in sync and verified bytes are never touched.
                await reader.read_payload(dest, hasher, tmo, self.stall_timeout_s)
        finally:
            if plan == NEW and inc is not None:
                inc.tracker.chunk_done(data.layer, data.offset)
        if reject:
            raise Reject(reject)
        if plan == BUSY:
            busy = fr.Nack(data.xid, data.layer, data.offset, data.length, fr.NACK_BUSY)
            await send_frames(loop, sock, fr.encode(busy))
            return
        if inc is None and key not in self._completed:
            await send_frames(loop, sock, fr.encode(fr.Abort(data.xid, "unknown transfer")))
            return
        if inc is not None and hasher is not None:
            if hasher.intdigest() != data.checksum:
                inc.tracker.rejected_chunks += 1
                self.stats.chunks_rejected += 1
                nack = fr.Nack(data.xid, data.layer, data.offset, data.length, fr.NACK_CHECKSUM)
                await send_frames(loop, sock, fr.encode(nack))
                return
            inc.tracker.chunk_verified(data.layer, data.offset, data.length)
            self.stats.bytes_verified += data.length
        ack = fr.Ack(data.xid, data.layer, data.offset, data.length)
        await send_frames(loop, sock, fr.encode(ack))
        if inc is not None:
            await self._maybe_finish(loop, sock, key, inc)

    def _scratch_view(self, n: int) -> memoryview:
        if len(self._scratch) < n:
            self._scratch = memoryview(bytearray(n))
        return self._scratch[:n]

    async def _maybe_finish(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, key: Key, inc: Incoming
    ) -> None:
        tracker = inc.tracker
        if not tracker.complete or key not in self._transfers:
            return
        del self._transfers[key]
        self._completed[key] = tracker.verified_bytes
        while len(self._completed) > 4096:
            self._completed.popitem(last=False)
        self.stats.transfers_completed += 1
        result = ReceivedTransfer(
            transfer_id=tracker.name,
            peer_session=key[0].hex(),
            layers=tuple(inc.buffers[i] for i in sorted(inc.buffers)),
            total_bytes=tracker.verified_bytes,
            seconds=time.monotonic() - inc.started,
            checksum=checksum.NAMES[tracker.begin.checksum_alg],
            rejected_chunks=tracker.rejected_chunks,
        )
        committed = fr.Committed(key[1], tracker.verified_bytes)
        with contextlib.suppress(OSError):
            await send_frames(loop, sock, fr.encode(committed))
        if self._on_complete is not None:
            try:
                outcome = self._on_complete(result)
            except Exception:  # the consumer's bug must not kill this connection
                log.exception("on_transfer_complete failed for %r", tracker.name)
                return
            if inspect.isawaitable(outcome):
                self._spawn(outcome)

