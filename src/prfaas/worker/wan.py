"""The WAN emulator process: shaping relays (prfaas.transfer.shaping) in front of transfer ports.

Every link direction (src cluster -> dst cluster) has ONE token bucket shared by all its relays, so
all senders of a cluster share the link's capacity as they would share a real line; each relay adds
the one-way delay. The router asks for a relay per (link direction, receiving node) when the node
registers and hands senders the relay's port instead of the node's. Intra-cluster traffic goes
through a relay only when the cluster sets intra_gbps (the fast link); else it is direct.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from prfaas.deploy.config import DeploymentConfig
from prfaas.transfer.shaping import ShapingRelay, TokenBucket


class RelayRequest(msgspec.Struct, frozen=True):
    src: str  # sending cluster
    dst: str  # receiving cluster
    host: str  # the receiving node's transfer endpoint
    port: int


def link_shape(cfg: DeploymentConfig, src: str, dst: str) -> tuple[float, float] | None:
    """(emulated rate Gbit/s or 0 = unlimited, one-way delay s) of a direction; None = direct."""
    eng = cfg.engine
    if src == dst:
        gbps, rtt_ms = cfg.cluster(src).intra_gbps, 0.0
    else:
        link = cfg.link(src, dst)
        if link is None:
            return None
        gbps, rtt_ms = link.gbps, link.rtt_ms
    if gbps <= 0 and rtt_ms <= 0:
        return None
    return gbps * eng.link_scale, rtt_ms / 2000.0 / eng.time_scale


class Wan:
    def __init__(self, cfg: DeploymentConfig, host: str) -> None:
        self.cfg, self.host = cfg, host
        self.buckets: dict[tuple[str, str], TokenBucket] = {}
        self.relays: dict[tuple[str, str, str, int], ShapingRelay] = {}
        self._lock = asyncio.Lock()

    async def relay(self, req: RelayRequest) -> int | None:
        shape = link_shape(self.cfg, req.src, req.dst)
        if shape is None:
            return None
        key = (req.src, req.dst, req.host, req.port)
        async with self._lock:
            relay = self.relays.get(key)
            if relay is None:
                rate_gbps, delay_s = shape
                relay = ShapingRelay(
                    self.host,
                    0,
                    req.host,
                    req.port,
                    one_way_delay_s=delay_s,
                    rate_gbps=rate_gbps or None,
                )
                if rate_gbps:
                    bucket = self.buckets.setdefault((req.src, req.dst), TokenBucket(rate_gbps))
                    relay.bucket = bucket  # one line per link direction, shared by all relays
                await relay.start()
                self.relays[key] = relay
            return int(relay.port)

    async def close(self) -> None:
        for relay in self.relays.values():
            with contextlib.suppress(Exception):
                await relay.close()


def build_wan_app(wan: Wan) -> Starlette:
    async def relay(request: Request) -> JSONResponse:
        try:
            req = msgspec.json.decode(await request.body(), type=RelayRequest)
        except msgspec.MsgspecError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        port = await wan.relay(req)
        return JSONResponse({"host": wan.host, "port": port})

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "relays": len(wan.relays)})

    return Starlette(
        routes=[Route("/relay", relay, methods=["POST"]), Route("/health", health, methods=["GET"])]
    )


def needs_wan(cfg: DeploymentConfig) -> bool:
    return bool(cfg.links) or any(c.intra_gbps > 0 for c in cfg.clusters)


async def run_wan(cfg: DeploymentConfig, ready_file: Path | None, port: int | None = None) -> None:
    from prfaas.worker.app import bind_socket, serve_uvicorn, write_ready

    host = cfg.router.host
    wan = Wan(cfg, host)
    sock = bind_socket(host, port or 0)
    write_ready(ready_file, {"url": f"http://{host}:{sock.getsockname()[1]}"})
    try:
        await serve_uvicorn(build_wan_app(wan), sock)
    finally:
        await wan.close()
