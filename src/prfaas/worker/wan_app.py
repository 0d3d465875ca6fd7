"""The WAN emulator's process: its control API (/relay, /link, /health, /fault) and main loop."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from prfaas.deploy.config import DeploymentConfig
from prfaas.security.asgi import Guard, read_bounded
from prfaas.security.tls import OPERATOR, ROUTER, Pki
from prfaas.worker.wan import LinkRate, RelayRefused, RelayRequest, Wan
from prfaas.worker.wanfaults import BitFlipper, fault_route

T = TypeVar("T")


def build_wan_app(wan: Wan, guard: Guard | None = None) -> Starlette:
    """/relay for the router (and the operator) only; /health for any cluster identity; with
    fault hooks, /fault for the operator."""
    guard = guard or Guard(insecure=True)
    flipper = wan.tamper if isinstance(wan.tamper, BitFlipper) else None

    async def operator_call(request: Request, kind: type[T],
                            act: Callable[[T], Awaitable[dict[str, Any]]]) -> Response:
        """A router's (or the operator's) typed call: 400 on a bad body or a refused change."""
        if (deny := guard.check(request, (ROUTER, OPERATOR))) is not None:
            return deny
        try:
            body = msgspec.json.decode(await read_bounded(request, 4096), type=kind)
            return JSONResponse(await act(body))
        except (msgspec.MsgspecError, RelayRefused, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    async def open_relay(req: RelayRequest) -> dict[str, Any]:
        return {"host": wan.advertise, "port": await wan.relay(req)}

    async def set_link(req: LinkRate) -> dict[str, Any]:
        return {"src": req.src, "dst": req.dst, "emulated_gbps": await wan.set_link(req)}

    async def relay(request: Request) -> Response:
        return await operator_call(request, RelayRequest, open_relay)

    async def link(request: Request) -> Response:
        return await operator_call(request, LinkRate, set_link)

    async def health(request: Request) -> Response:
        if (deny := guard.check(request, lambda _peer: True)) is not None:
            return deny
        faults = flipper.state() if flipper is not None else None
        return JSONResponse({"ok": True, "relays": len(wan.relays), "faults": faults})

    routes = [
        Route("/relay", relay, methods=["POST"]),
        Route("/link", link, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
    ]
    if flipper is not None:
        routes.append(Route("/fault", fault_route(flipper, guard), methods=["POST"]))
    return Starlette(routes=routes)


async def run_wan(
    cfg: DeploymentConfig,
    ready_file: Path | None,
    port: int | None = None,
    pki: Pki | None = None,
    fault_hooks: bool = False,
    state_file: Path | None = None,
    host: str = "",
) -> None:
    from prfaas.security.asgi import serve
    from prfaas.worker.app import bind_socket, write_ready

    # Binds (and relays on) `host`, or the control network's address; relays are handed out
    # as the advertised one.
    bind = host or cfg.router.control_host
    advertise = host or cfg.router.advertise
    wan = Wan(cfg, bind, BitFlipper() if fault_hooks else None, state_file, advertise)
    # uvicorn re-raises the SIGTERM it caught once it has shut down; with the default handler
    # that would end the process before the `finally` below deletes the namespaces.
    previous = signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        wan.build_netns()
        sock = bind_socket(bind, port or 0)
        if await wan.restore():  # a restart: senders still dial the old relay ports
            wan.notes.append(f"reopened {len(wan.relays)} relays from {state_file}")
        scheme = "https" if pki is not None else "http"
        url = f"{scheme}://{advertise}:{sock.getsockname()[1]}"
        write_ready(ready_file, {"url": url, "notes": wan.notes})
        app = build_wan_app(wan, Guard(pki is None))
        # SIGTERM ends the emulator at once (the handler above): a graceful uvicorn stop would
        # wait on the routers' kept-alive connections, and relays hold nothing worth waiting for.
        await serve(app, sock, pki.server if pki is not None else None, install_signals=False)
    finally:
        await wan.close()
        signal.signal(signal.SIGTERM, previous)


def _exit_on_signal(signo: int, _frame: object) -> None:
    raise SystemExit(128 + signo)
