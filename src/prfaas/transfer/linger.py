"""Refusing a transfer connection: an ERROR frame, then a lingering close (no RST over it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl

from prfaas.transfer import frames as fr
from prfaas.transfer.sockio import send_frames
from prfaas.transfer.tlsio import wait_fd

log = logging.getLogger("prfaas.transfer.server")


async def refuse(loop: asyncio.AbstractEventLoop, sock: socket.socket, code: int, msg: str) -> None:
    """Tell the peer why with an ERROR frame, then close without destroying it in flight."""
    log.warning("transfer connection refused: %s", msg)
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(1.0):
            await send_frames(loop, sock, fr.encode(fr.Error(code, msg)))
            # Lingering close: closing with unread input would send RST and could destroy
            # the ERROR frame in flight, so half-close and discard (bounded) what follows.
            sock.shutdown(socket.SHUT_WR)
            sink = memoryview(bytearray(64 << 10))
            for _ in range(16):
                if not await _drain(loop, sock, sink):
                    break


async def _drain(loop: asyncio.AbstractEventLoop, sock: socket.socket, sink: memoryview) -> int:
    """One read of what the peer still sends (plain or TLS), into `sink`."""
    while True:
        try:
            return sock.recv_into(sink)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
            await wait_fd(loop, sock, write=False)
