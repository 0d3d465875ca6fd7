"""The worker process: its control HTTP API, heartbeats to the router, and start/stop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
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
from prfaas.worker.messages import DecodeJob, FaultSpec, PrefillJob, PushJob, RoleChange
from prfaas.worker.node import WorkerError, WorkerNode

log = logging.getLogger(__name__)
_ENC = msgspec.json.Encoder()


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


def build_app(worker: WorkerNode) -> Starlette:
    """Control API: /health, /prefill, /decode (NDJSON stream), /push, /role, /fault."""

    async def health(_: Request) -> Response:
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
        """Decode a job, run it, answer JSON: refusals are 409, unexpected failures 500."""
        try:
            job = msgspec.json.decode(await request.body(), type=job_type)
            return _json(await run(job))
        except (WorkerError, msgspec.ValidationError) as exc:
            return _error(exc, 409)
        except Exception as exc:
            log.exception("%s failed", what)
            return _error(exc, 500)

    async def prefill(request: Request) -> Response:
        return await call(request, PrefillJob, worker.prefill, "prefill")

    async def decode(request: Request) -> Response:
        try:
            job = msgspec.json.decode(await request.body(), type=DecodeJob)
            stream = worker.decode(job)
            first = await _first_or_disconnect(request, stream)
        except (WorkerError, msgspec.ValidationError) as exc:
            return _error(exc, 409)
        if first is None:  # the router gave up (e.g. prefill failed everywhere): free the slot
            return Response(status_code=499)

        async def body() -> AsyncIterator[bytes]:
            yield _ENC.encode(first) + b"\n"
            async for line in stream:
                yield _ENC.encode(line) + b"\n"

        return StreamingResponse(body(), media_type="application/x-ndjson")

    async def push(request: Request) -> Response:
        return await call(request, PushJob, worker.push, "push")

    async def role(request: Request) -> Response:
        try:
            change = msgspec.json.decode(await request.body(), type=RoleChange)
            await worker.change_role(change.role)
        except (WorkerError, msgspec.ValidationError) as exc:
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
        try:
            worker.arm_fault(msgspec.json.decode(await request.body(), type=FaultSpec))
        except (WorkerError, msgspec.ValidationError) as exc:
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


async def heartbeat_loop(worker: WorkerNode, router_url: str, period_s: float) -> None:
    """Push load, cache events and link counters to the router; events survive a failed post."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0)) as client:
        while True:
            beat = worker.heartbeat()
            try:
                resp = await client.post(
                    f"{router_url}/internal/heartbeat", content=_ENC.encode(beat)
                )
                resp.raise_for_status()
            except httpx.HTTPError as exc:
                log.debug("heartbeat to %s failed: %s", router_url, exc)
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


async def serve_uvicorn(app: Any, sock: socket.socket) -> None:
    import uvicorn

    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=30
    )
    server = uvicorn.Server(config)
    await server.serve(sockets=[sock])


async def run_worker(
    cfg: DeploymentConfig,
    node_name: str,
    router_url: str,
    secret: bytes,
    ready_file: Path | None,
    fault_hooks: bool,
) -> None:
    from prfaas.worker.engines import make_engine
    from prfaas.worker.kvlink import KvLink

    node_cfg = cfg.node(node_name)
    host = cfg.router.host
    engine = await asyncio.to_thread(make_engine, cfg, node_cfg)
    kv = KvLink(secret, host)
    await kv.start(node_cfg.transfer_port)
    worker = WorkerNode(cfg, node_cfg, engine, kv, fault_hooks=fault_hooks)
    sock = bind_socket(host, node_cfg.port)
    worker.url = f"http://{host}:{sock.getsockname()[1]}"
    beats = asyncio.create_task(heartbeat_loop(worker, router_url, cfg.router.heartbeat_s))
    write_ready(ready_file, {"url": worker.url, "transfer_port": kv.port})
    try:
        await serve_uvicorn(build_app(worker), sock)
    finally:
        beats.cancel()
        with contextlib.suppress(BaseException):
            await beats
        await worker.close()
