"""The WAN emulator's netns relay: loopback -> a socket in one namespace -> the shaped veth ->
a delay listener in the other namespace -> the receiving node (see worker/wan.py)."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from prfaas.transfer.netns import NetnsLink, socket_in
from prfaas.transfer.shaping import READ_BYTES, ShapingRelay


class _NsListener(ShapingRelay):
    """The delay relay, accepting on a socket made inside a namespace (the veth's far end)."""

    def __init__(self, sock: socket.socket, host: str, port: int, delay_s: float) -> None:
        super().__init__("", 0, host, port, one_way_delay_s=delay_s)  # tbf does the rate
        self.sock = sock

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, sock=self.sock)
        self.port = self.sock.getsockname()[1]


class NetnsRelay:
    """loopback :port -> socket in `send_ns` -> veth (tbf) -> listener in the other namespace
    (+ delay) -> the receiving node on loopback. Same start/close/port as ShapingRelay."""

    def __init__(
        self,
        host: str,
        link: NetnsLink,
        send_side: str,
        target: tuple[str, int],
        delay_s: float,
        port: int = 0,
    ) -> None:
        self.host, self.port = host, port
        self.send_ns = link.ns_a if send_side == "a" else link.ns_b
        recv_ns, self.recv_addr = (
            (link.ns_b, link.addr_b) if send_side == "a" else (link.ns_a, link.addr_a)
        )
        far = socket_in(recv_ns)
        far.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        far.bind((self.recv_addr, 0))
        far.listen(1024)
        far.setblocking(False)
        self.far = _NsListener(far, target[0], target[1], delay_s)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.far.start()
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.far.close()

    async def _handle(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_w: asyncio.StreamWriter | None = None
        try:
            sock = socket_in(self.send_ns)
            sock.setblocking(False)
            try:
                await asyncio.get_running_loop().sock_connect(sock, (self.recv_addr, self.far.port))
            except OSError:
                sock.close()
                raise
            up_r, up_w = await asyncio.open_connection(sock=sock)
            await asyncio.gather(_pipe(down_r, up_w), _pipe(up_r, down_w))
        except (OSError, asyncio.CancelledError):
            pass  # a peer went away, or close(): the connection ends here, quietly
        finally:
            for w in (up_w, down_w):
                if w is not None:
                    w.transport.abort()
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(READ_BYTES):
        writer.write(data)
        await writer.drain()
    with contextlib.suppress(OSError):
        writer.write_eof()
