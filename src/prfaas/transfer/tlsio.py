"""TLS on the transfer's non-blocking sockets (stdlib `ssl`): handshake, sendall, peek for TLS.

asyncio's sock_* helpers refuse ssl.SSLSocket, and the transfer reads into caller buffers with
its own readiness waits, so the few places that write use `sendall` here and the reader treats
SSLWantRead/WantWrite like EAGAIN (see sockio.Reader). TLS records are authenticated (AES-GCM or
ChaCha20-Poly1305): a flipped bit on the wire fails the record, the connection drops, and the
sender re-sends its unacknowledged chunks on a fresh connection.
"""

from __future__ import annotations

import asyncio
import socket
import ssl

TLS_HANDSHAKE = 0x16  # first byte of a TLS record carrying a ClientHello


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def wait_fd(loop: asyncio.AbstractEventLoop, sock: socket.socket, write: bool) -> None:
    fut: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()
    (loop.add_writer if write else loop.add_reader)(fd, _wake, fut)
    try:
        await fut
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


async def handshake(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    ctx: ssl.SSLContext,
    *,
    server_side: bool,
    server_hostname: str | None = None,
) -> ssl.SSLSocket:
    """Wrap a connected non-blocking socket and complete the handshake (certificates checked)."""
    tls = ctx.wrap_socket(
        sock,
        server_side=server_side,
        server_hostname=server_hostname,
        do_handshake_on_connect=False,
    )
    try:
        while True:
            try:
                tls.do_handshake()
                return tls
            except ssl.SSLWantReadError:
                await wait_fd(loop, tls, write=False)
            except ssl.SSLWantWriteError:
                await wait_fd(loop, tls, write=True)
    except BaseException:
        tls.close()  # the plain socket was detached into it
        raise


async def sendall(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, data: bytes | memoryview
) -> None:
    """loop.sock_sendall for plain sockets; a retrying send loop for TLS ones."""
    if not isinstance(sock, ssl.SSLSocket):
        await loop.sock_sendall(sock, data)
        return
    view = memoryview(data).cast("B")
    while len(view):
        try:
            n = sock.send(view)
        except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
            await wait_fd(loop, sock, write=True)
            continue
        except ssl.SSLWantReadError:
            await wait_fd(loop, sock, write=False)
            continue
        view = view[n:]


async def starts_with_tls(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bool:
    """Whether the peer's first byte opens a TLS handshake (peeked: nothing is consumed)."""
    while True:
        try:
            head = sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            await wait_fd(loop, sock, write=False)
            continue
        return bool(head) and head[0] == TLS_HANDSHAKE
