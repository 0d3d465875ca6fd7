"""The worker process: its control HTTP API, its cluster membership (etcd), and start/stop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from prfaas.deploy.config import DeploymentConfig
from prfaas.security.asgi import CallerGone, Guard, read_bounded, unless_gone
from prfaas.security.tls import OPERATOR, ROUTER, Pki
from prfaas.worker.errors import WorkerError
from prfaas.worker.messages import DecodeJob, FaultSpec, PrefillJob, PushJob
from prfaas.worker.node import WorkerNode

log = logging.getLogger(__name__)
_ENC = msgspec.json.Encoder()
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


def build_app(worker: WorkerNode, guard: Guard | None = None) -> Starlette:
    """Control API: /health, /prefill, /decode (NDJSON stream), /push, /fault, /pool. Only the
    router may give jobs and faults (the operator too: faults, /pool); /push serves cache pulls
    of the other nodes. Roles are assigned in etcd (worker/cluster_link.py), not over this API."""
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
            return _json(await unless_gone(request, run(job)))
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

    async def pool(request: Request) -> Response:
        """The prefix pool's blocks (hash -> has a state checkpoint): what the routers' indexes
        rebuild from this node's event stream."""
        if (deny := guard.check(request, from_operator)) is not None:
            return deny
        return _json({"epoch": worker.epoch, "blocks": worker.pool.contents()})

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
            Route("/fault", fault, methods=["POST"]),
            Route("/pool", pool, methods=["GET"]),
        ]
    )


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


@dataclass(slots=True)
class StartedNode:
    """A node whose listeners are bound and whose record is in etcd, not yet serving."""

    worker: WorkerNode
    member: Any  # worker.cluster_link.WorkerCluster
    sock: socket.socket
    pki: Pki | None

    def app(self) -> Starlette:
        return build_app(self.worker, Guard(self.pki is None))

    def ready(self) -> dict[str, Any]:
        return {"url": self.worker.url, "transfer_port": self.worker.kv.port}

    async def close(self) -> None:
        with contextlib.suppress(BaseException):  # bounded: etcd may be stopping too
            await asyncio.wait_for(self.member.close(), 3.0)
        await self.worker.close()


async def start_node(
    cfg: DeploymentConfig,
    node_name: str,
    etcd_url: str,
    secret: bytes,
    fault_hooks: bool,
    pki: Pki | None = None,
    shared: Any = None,
) -> StartedNode:
    """Build the node's engine and listeners and register it (`shared`: the process's ZMQ)."""
    from prfaas.worker.cluster_link import WorkerCluster
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
    node = StartedNode(worker, WorkerCluster(worker, etcd_url, pki, shared), sock, pki)
    try:
        await node.member.start()
    except BaseException:
        await node.close()
        raise
    return node


async def run_worker(
    cfg: DeploymentConfig,
    node_name: str,
    etcd_url: str,
    secret: bytes,
    ready_file: Path | None,
    fault_hooks: bool,
    pki: Pki | None = None,
) -> None:
    node = await start_node(cfg, node_name, etcd_url, secret, fault_hooks, pki)
    try:
        write_ready(ready_file, node.ready())
        await serve_uvicorn(node.app(), node.sock, pki.server if pki is not None else None)
    finally:
        await node.close()
