"""The worker process: its control HTTP API, heartbeats to the router, and start/stop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from prfaas.deploy.config import DeploymentConfig
from prfaas.security.asgi import Guard, read_bounded
from prfaas.security.tls import OPERATOR, ROUTER, Pki
from prfaas.worker.messages import (
    DecodeJob,
    FaultSpec,
    HeartbeatReply,
    PrefillJob,
    PushJob,
    RoleChange,
)
from prfaas.worker.node import WorkerError, WorkerNode

log = logging.getLogger(__name__)
_ENC = msgspec.json.Encoder()
_REPLY = msgspec.json.Decoder(HeartbeatReply)
MAX_RPC_BODY = 64 << 20  # a prefill job carries the prompt's token ids



def _json(obj: Any, status: int = 200) -> Response:
    return Response(_ENC.encode(obj), status_code=status, media_type="application/json")


def _error(exc: BaseException, status: int) -> Response:
    return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=status)


async def _first_or_disconnect(request: Request, stream: AsyncIterator[Any]) -> Any:
    """The stream's first line (it waits for the KV), or None once the caller went away."""
    first = asyncio.ensure_future(anext(stream))
    while True:
        done, _ = await asyncio.wait({first}, timeout=0.5)
        if done:
            return first.result()  # role errors surface here as a status, not mid-stream
        if await request.is_disconnected():
            first.cancel()
            with contextlib.suppress(BaseException):
                await first
            await stream.aclose()  # type: ignore[attr-defined]
            return None


async def _unless_gone(request: Request, job: Any) -> Any:
    """Run `job`; cancel it once the caller hangs up (the client left: a queued prefill leaves
    the queue, a running one stops, its transfer is dropped). Raises CallerGone then."""
    work = asyncio.ensure_future(job)
    gone = asyncio.ensure_future(_disconnect(request))
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


async def _disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


class CallerGone(Exception):
    """The router closed the connection before the answer (its client went away)."""


def build_app(worker: WorkerNode, guard: Guard | None = None) -> Starlette:
    """Control API: /health, /prefill, /decode (NDJSON stream), /push, /role, /fault. Only the
    router may give jobs, roles and faults (the operator too: faults); /push serves cache pulls
    of the other nodes."""
    guard = guard or Guard(insecure=True)
    nodes = {n.name for n in worker.cfg.nodes} - {worker.name}
    from_router = {ROUTER}
    from_operator = {ROUTER, OPERATOR}

    async def health(request: Request) -> Response:
        if (deny := guard.check(request, lambda _peer: True)) is not None:
            return deny
        return _json(
            {
                "ok": True,
                "node": worker.name,
                "role": worker.role,
                "draining": worker.draining,
                "busy": worker.busy,
            }
        )

    async def call(request: Request, job_type: type[Any], run: Any, what: str) -> Response:
        """Decode a job, run it (cancelled if the caller hangs up), answer JSON: malformed bodies
        are 400, refusals 409, unexpected failures 500."""
        try:
            job = msgspec.json.decode(await read_bounded(request, MAX_RPC_BODY), type=job_type)
        except (msgspec.MsgspecError, ValueError) as exc:
            return _error(exc, 400)
        try:
            return _json(await _unless_gone(request, run(job)))
        except CallerGone:
            return Response(status_code=499)  # nobody reads it
        except WorkerError as exc:
            return _error(exc, 409)
        except Exception as exc:
            log.exception("%s failed", what)
            return _error(exc, 500)

    async def prefill(request: Request) -> Response:
        if (deny := guard.check(request, from_router)) is not None:
            return deny
        return await call(request, PrefillJob, worker.prefill, "prefill")

    async def decode(request: Request) -> Response:
        if (deny := guard.check(request, from_router)) is not None:
            return deny
        try:
            job = msgspec.json.decode(await read_bounded(request, MAX_RPC_BODY), type=DecodeJob)
        except (msgspec.MsgspecError, ValueError) as exc:
            return _error(exc, 400)
        try:
            stream = worker.decode(job)
            first = await _first_or_disconnect(request, stream)
        except WorkerError as exc:
            return _error(exc, 409)
        if first is None:  # the router gave up (e.g. prefill failed everywhere): free the slot
            return Response(status_code=499)

        async def body() -> AsyncIterator[bytes]:
            yield _ENC.encode(first) + b"\n"
            async for line in stream:
                yield _ENC.encode(line) + b"\n"

        return StreamingResponse(body(), media_type="application/x-ndjson")

    async def push(request: Request) -> Response:
        if (deny := guard.check(request, nodes)) is not None:
            return deny
        return await call(request, PushJob, worker.push, "push")

    async def role(request: Request) -> Response:
        if (deny := guard.check(request, from_router)) is not None:
            return deny
        try:
            change = msgspec.json.decode(await read_bounded(request, MAX_RPC_BODY), type=RoleChange)
        except (msgspec.MsgspecError, ValueError) as exc:
            return _error(exc, 400)
        try:
            await worker.change_role(change.role)
        except WorkerError as exc:
            return _error(exc, 409)
        return _json(
            {
                "ok": True,
                "role": worker.role,
                "role_version": worker.role_version,
                "max_batch": worker.max_batch if worker.role == "decode" else 1,
            }
        )

    async def fault(request: Request) -> Response:
        if (deny := guard.check(request, from_operator)) is not None:
            return deny
        try:
            spec = msgspec.json.decode(await read_bounded(request, MAX_RPC_BODY), type=FaultSpec)
        except (msgspec.MsgspecError, ValueError) as exc:
            return _error(exc, 400)
        try:
            worker.arm_fault(spec)
        except WorkerError as exc:
            return _error(exc, 409)
        return _json({"ok": True})

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/prefill", prefill, methods=["POST"]),
            Route("/decode", decode, methods=["POST"]),
            Route("/push", push, methods=["POST"]),
            Route("/role", role, methods=["POST"]),
            Route("/fault", fault, methods=["POST"]),
        ]
    )


async def heartbeat_loop(
    worker: WorkerNode, router_url: str, period_s: float, tls: ssl.SSLContext | None = None
) -> None:
    """Push load, cache events and link counters to the router (which must prove it is the
    router); learn the peers' addresses from its answers; events survive a failed post."""
    verify: ssl.SSLContext | bool = tls if tls is not None else True
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0), verify=verify) as client:
        while True:
            beat = worker.heartbeat()
            try:
                resp = await client.post(
                    f"{router_url}/internal/heartbeat",
                    content=_ENC.encode(beat),
                    extensions={"sni_hostname": ROUTER},
                )
                resp.raise_for_status()
                worker.peers = _REPLY.decode(resp.content).peers
            except (httpx.HTTPError, msgspec.MsgspecError) as exc:
                log.debug("heartbeat to the router failed: %s", type(exc).__name__)
                worker.requeue_events(beat.events)
            await asyncio.sleep(period_s)


def bind_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this. Without it, uvicorn's separate header and body writes meet
    # Nagle + the peer's delayed ACK: ~40 ms added to every request on a kept-alive connection.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def write_ready(path: Path | None, info: dict[str, Any]) -> None:
    """Atomically publish how to reach this process (the supervisor polls for the file)."""
    if path is None:
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**info, "pid": os.getpid()}))
    tmp.replace(path)


async def serve_uvicorn(app: Any, sock: socket.socket, tls: ssl.SSLContext | None = None) -> None:
    from prfaas.security.asgi import serve

    await serve(app, sock, tls)


async def run_worker(
    cfg: DeploymentConfig,
    node_name: str,
    router_url: str,
    secret: bytes,
    ready_file: Path | None,
    fault_hooks: bool,
    pki: Pki | None = None,
) -> None:
    from prfaas.worker.engines import make_engine
    from prfaas.worker.kvlink import KvLink

    node_cfg = cfg.node(node_name)
    host = node_cfg.host
    engine = await asyncio.to_thread(make_engine, cfg, node_cfg)
    kv_tls = pki is not None and cfg.security.kv_tls != "off"
    kv = KvLink(secret, host, pki if kv_tls else None, cfg.security.kv_tls == "all")
    await kv.start(node_cfg.transfer_port)
    tls = pki.client if pki is not None else None
    worker = WorkerNode(cfg, node_cfg, engine, kv, fault_hooks=fault_hooks, tls=tls)
    sock = bind_socket(host, node_cfg.port)
    scheme = "https" if pki is not None else "http"
    worker.url = f"{scheme}://{node_cfg.advertise}:{sock.getsockname()[1]}"
    beats = asyncio.create_task(heartbeat_loop(worker, router_url, cfg.router.heartbeat_s, tls))
    write_ready(ready_file, {"url": worker.url, "transfer_port": kv.port})
    try:
        await serve_uvicorn(
            build_app(worker, Guard(pki is None)), sock, pki.server if pki is not None else None
        )
    finally:
        beats.cancel()
        with contextlib.suppress(BaseException):
            await beats
        await worker.close()
