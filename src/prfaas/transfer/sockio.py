"""asyncio socket helpers: exact reads into caller buffers, hashing payload bytes as they land."""

from __future__ import annotations

import asyncio
import socket
import ssl

from prfaas.transfer import frames as fr
from prfaas.transfer.checksum import Hasher
from prfaas.transfer.errors import FrameError
from prfaas.transfer.tlsio import sendall

# Hash landed bytes in steps of at least this much: large enough to keep Python overhead low,
# small enough that the bytes are still in cache when hashed.
HASH_STEP_BYTES = 1 << 20


class PeerClosed(ConnectionError):
    """The peer closed the connection."""


def tune(sock: socket.socket) -> None:
    sock.setblocking(False)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# Upper bound on SO_RCVLOWAT: wake the receiver once this much payload is buffered, not per
# segment. Fewer wake-ups leave more CPU to the sender on a small machine (measured: about a
# third less receiver CPU per GiB on one shared core).
MAX_LOWAT_BYTES = 8 << 20
# How long a reader that guesses a big frame follows waits for it before settling for less.
GUESS_PATIENCE_S = 0.002


class Reader:
    """Reads frames and payloads from one non-blocking socket into caller-owned buffers."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self.loop, self.sock = loop, sock
        self.decoder = fr.FrameDecoder()
        self._scratch = memoryview(bytearray(fr.HEADER_BYTES + fr.MAX_META_BYTES))
        self._lowat = 1
        self.tls = isinstance(sock, ssl.SSLSocket)

    async def _wait(self, want: int, patience_s: float = 0.0) -> None:
        # Over TLS the kernel holds ciphertext and the TLS object may hold decrypted bytes: a
        # low-water mark in plaintext terms could wait for bytes that never come.
        lowat = 1 if self.tls else max(1, min(want, MAX_LOWAT_BYTES))
        if lowat != self._lowat:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, lowat)
            self._lowat = lowat
        fut: asyncio.Future[None] = self.loop.create_future()
        fd = self.sock.fileno()
        self.loop.add_reader(fd, _wake, fut)
        timer = self.loop.call_later(patience_s, _wake, fut) if patience_s else None
        try:
            await fut
        finally:
            self.loop.remove_reader(fd)
            if timer is not None:
                timer.cancel()

    async def recv_into(self, view: memoryview, expect: int = 0, guess: int = 0) -> int:
        """Read at least one byte (up to len(view)); raises PeerClosed at end of stream.

        `expect`: bytes certainly on their way (default len(view)): when the read has to wait,
        the socket wakes us only once that many (capped) have arrived. `guess`: bytes that
        probably follow; waited for at most GUESS_PATIENCE_S, then we settle for `expect`.
        """
        patience = GUESS_PATIENCE_S if guess else 0.0
        while True:
            try:
                k = self.sock.recv_into(view)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                await self._wait(max(guess, expect or len(view)), patience)
                guess, patience = 0, 0.0
                continue
            except ssl.SSLWantWriteError:
                await writable(self.loop, self.sock)
                continue
            if k == 0:
                raise PeerClosed("peer closed the connection")
            return k

    async def read_frame(self, guess_after: int = 0) -> fr.Frame:
        """Next frame (header + metadata); a DATA payload is left for `read_payload`.

        `guess_after`: payload bytes that probably follow the header (the last chunk's size on a
        busy connection), so one wake-up can cover header and payload.
        """
        if self.decoder.in_payload:
            raise FrameError("read_frame called while a payload is still due")
        while True:
            want = self.decoder.want()
            got = 0
            while got < want:
                guess = fr.DATA_HEADER_BYTES - got + guess_after if guess_after else 0
                got += await self.recv_into(self._scratch[got:want], guess=guess)
            events = self.decoder.feed(self._scratch[:want])
            if events:
                frame = events[0]
                assert not isinstance(frame, fr.PayloadPart)  # exact reads stop before payload
                return frame

    async def read_payload(
        self,
        view: memoryview,
        hasher: Hasher | None,
        timeout: asyncio.Timeout | None = None,
        stall_s: float = 0.0,
    ) -> None:
        """Fill `view` with the current DATA payload, hashing landed bytes in cache-sized steps.

        With a hasher, each read is capped at HASH_STEP_BYTES so the bytes are hashed while they
        are still in the CPU cache the kernel's copy just filled. With `timeout`, every read that
        makes progress pushes the deadline `stall_s` further: slow links live, stalled ones die.
        """
        got, n, pushed = 0, len(view), 0
        step = HASH_STEP_BYTES if hasher is not None else n
        while got < n:
            k = await self.recv_into(view[got : min(n, got + step)], n - got)
            if hasher is not None:
                hasher.update(view[got : got + k])
            got += k
            # Push the deadline per hash step, not per read: over TLS a read is one 16 KiB record.
            if timeout is not None and (got - pushed >= HASH_STEP_BYTES or got == n):
                timeout.reschedule(self.loop.time() + stall_s)
                pushed = got
        self.decoder.consume_payload(n)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def writable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    fut: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()
    loop.add_writer(fd, _wake, fut)
    try:
        await fut
    finally:
        loop.remove_writer(fd)


async def send_buffers(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, bufs: list[memoryview]
) -> None:
    """Send all of `bufs` with scatter/gather `sendmsg` (no joining copy); TLS encrypts each
    buffer in turn (it copies into records anyway)."""
    if isinstance(sock, ssl.SSLSocket):
        for buf in bufs:
            await sendall(loop, sock, buf)
        return
    pending = [b for b in bufs if len(b)]
    while pending:
        try:
            n = sock.sendmsg(pending)
        except (BlockingIOError, InterruptedError):
            await writable(loop, sock)
            continue
        while n:
            head = len(pending[0])
            if n >= head:
                n -= head
                pending.pop(0)
            else:
                pending[0] = pending[0][n:]
                n = 0


async def send_frames(loop: asyncio.AbstractEventLoop, sock: socket.socket, data: bytes) -> None:
    if data:
        await sendall(loop, sock, data)
