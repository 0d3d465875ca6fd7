"""Serving an ASGI app on a socket: TLS with client certificates, the peer identity in scope.

uvicorn does not put the TLS peer into the ASGI scope, so the protocol below copies the verified
certificate name into the connection's `scope["state"]["peer"]` (Starlette: `request.state.peer`);
`require` then checks it per route. Idle and slow connections are closed by uvicorn's keep-alive
timeout; `limit_concurrency` answers 503 beyond that many connections+requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from prfaas.security.tls import peer_name

T = TypeVar("T")

log = logging.getLogger(__name__)
KEEP_ALIVE_S = 5  # an idle kept-alive connection is closed after this
HEADER_TIMEOUT_S = 10.0  # a request head must arrive within this


class IdentifiedProtocol(HttpToolsProtocol):
    """HTTP/1.1 whose scope state carries the TLS peer's certificate name, and which closes a
    connection whose request head does not arrive within HEADER_TIMEOUT_S (uvicorn alone keeps
    a connection that never sends anything open forever)."""

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        peer = peer_name(transport.get_extra_info("ssl_object"))
        self.app_state = {**self.app_state, "peer": peer}
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(HEADER_TIMEOUT_S, self._header_timeout)

    def _header_timeout(self) -> None:
        self._header_timer = None
        self.transport.close()

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def peer_of(request: Request) -> str | None:
    return getattr(request.state, "peer", None)


class Guard:
    """Who may call what on one control listener; `insecure` lets everyone (plain HTTP mode)."""

    def __init__(self, insecure: bool) -> None:
        self.insecure = insecure

    def check(
        self, request: Request, allowed: Callable[[str], bool] | Iterable[str]
    ) -> Response | None:
        """None if the caller may proceed, else the 401/403 answer to send."""
        if self.insecure:
            return None
        peer = peer_of(request)
        if peer is None:
            return _deny(401, "a client certificate from the cluster CA is required")
        ok = allowed(peer) if callable(allowed) else peer in set(allowed)
        if not ok:
            return _deny(403, f"identity {peer!r} may not call {request.url.path}")
        return None


def _deny(status: int, message: str) -> Response:
    body = {"error": {"message": message, "type": "permission_error", "param": None,
                      "code": "forbidden" if status == 403 else "unauthenticated"}}
    return Response(json.dumps(body), status_code=status, media_type="application/json")


async def serve(
    app: Any,
    sock: socket.socket,
    ssl_context: ssl.SSLContext | None = None,
    *,
    limit_concurrency: int | None = None,
    install_signals: bool = True,
) -> None:
    """Serve `app` on the bound socket until SIGTERM/SIGINT (or the task is cancelled)."""
    server = make_server(app, ssl_context, limit_concurrency=limit_concurrency)
    if not install_signals:
        server.capture_signals = _no_signals
        await server.serve(sockets=[sock])
        return
    with sigterm_exits():
        await server.serve(sockets=[sock])


def make_server(
    app: Any, ssl_context: ssl.SSLContext | None, *, limit_concurrency: int | None = None
) -> Any:
    import uvicorn

    factory = None if ssl_context is None else (lambda _cfg, _default: ssl_context)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        http=IdentifiedProtocol,
        timeout_keep_alive=KEEP_ALIVE_S,
        limit_concurrency=limit_concurrency,
        ssl_context_factory=factory,
    )
    return uvicorn.Server(config)


def _no_signals() -> Any:
    return contextlib.nullcontext()


async def serve_many(servers: list[tuple[Any, socket.socket]]) -> None:
    """Run several uvicorn servers; the first one handles signals and stopping it stops all."""
    rest = servers[1:]
    for server, _ in rest:
        server.capture_signals = _no_signals
    tasks = [asyncio.create_task(s.serve(sockets=[sock])) for s, sock in rest]
    try:
        with sigterm_exits():  # in this coroutine, so the caller's `finally` runs on SIGTERM
            await servers[0][0].serve(sockets=[servers[0][1]])
    finally:
        for server, _ in rest:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.contextmanager
def sigterm_exits() -> Iterator[None]:
    """uvicorn re-raises the SIGTERM it caught once it has shut down; with the default handler
    that ends the process before any `finally` (a node would not revoke its etcd lease). With
    this, it raises SystemExit instead, so the caller's cleanup runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_exit(signo: int, _frame: object) -> None:
    raise SystemExit(128 + signo)


async def read_bounded(request: Request, cap: int) -> bytes:
    """The request body, or ValueError once it passes `cap` bytes (never buffered beyond it)."""
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > cap:
            raise ValueError(f"body over {cap} bytes")
    return bytes(data)


class CallerGone(Exception):
    """The caller hung up before the reply started: its work was cancelled."""


async def unless_gone(request: Request | None, aw: Awaitable[T]) -> T:
    """Await `aw`, cancelling it once the caller disconnects (then raise CallerGone): a client
    that hangs up takes its queued or running work with it. `request` None: just await."""
    if request is None:
        return await aw
    work = asyncio.ensure_future(aw)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if work.done():
        return work.result()
    work.cancel()
    with contextlib.suppress(BaseException):
        await work
    raise CallerGone


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
