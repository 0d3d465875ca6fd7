"""The router process: the OpenAI app over RouterBackend, heartbeats, monitors, rebalancer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
from fastapi import FastAPI, Request, Response

from prfaas.deploy.config import DeploymentConfig
from prfaas.errors import UsageError
from prfaas.router.backend import RouterBackend
from prfaas.router.rebalancer import control_state
from prfaas.worker.messages import Heartbeat

log = logging.getLogger(__name__)
_BEAT = msgspec.json.Decoder(Heartbeat)


class RouterDashboard:
    """DashboardSource for the router (see prfaas.server.dashboard for the shape)."""

    def __init__(self, backend: RouterBackend) -> None:
        self.backend = backend

    def snapshot(self) -> dict[str, Any]:
        b = self.backend
        links = [
            {
                "name": s.name,
                "egress_gbps": round(s.egress_gbps, 6),
                "capacity_gbps": s.capacity_gbps,
            }
            for s in b.bandwidth.links.values()
        ]
        nodes = [
            {
                "name": r.name,
                "cluster": r.cluster,
                "role": "draining" if r.draining else (r.role if r.alive else "down"),
                "queue_requests": r.prefill_inflight if r.role == "prefill" else r.decode_active,
                "queue_tokens": r.prefill_tokens,
            }
            for r in b.node_records()
        ]
        decisions = [
            {
                "request_id": d.request_id,
                "time_s": d.time_s,
                "input_tokens": d.input_tokens,
                "cached_tokens": d.cached_tokens,
                "prefill": d.placement.prefill_node,
                "decode": d.placement.decode_node,
                "reason": d.placement.reason,
            }
            for d in b.decisions
        ]
        return {
            "time_s": time.time(),
            "policy": b.policy_name,
            "threshold_tokens": b.threshold_tokens,
            "offload_fraction": round(b.offload_fraction(), 4),
            "links": links,
            "nodes": nodes,
            "decisions": decisions,
            "control": b.rebalancer.estimates if b.rebalancer is not None else {},
        }


def build_router_app(cfg: DeploymentConfig, wan_url: str = "") -> tuple[FastAPI, RouterBackend]:
    from prfaas.server.app import create_app
    from prfaas.server.metrics import ServerMetrics

    metrics = ServerMetrics()
    backend = RouterBackend(cfg, metrics, wan_url)
    app = create_app(
        backend,
        model_name=cfg.engine.model,
        max_context_tokens=backend.max_context_tokens,
        metrics=metrics,
        dashboard=RouterDashboard(backend),
    )

    async def heartbeat(request: Request) -> Response:
        try:
            beat = _BEAT.decode(await request.body())
            if beat.node not in backend.members.nodes:
                raise KeyError(beat.node)
            await backend.ensure_relays(beat)
            backend.members.heartbeat(beat)
        except (msgspec.ValidationError, msgspec.DecodeError, KeyError) as exc:
            return Response(f'{{"error": "{type(exc).__name__}"}}', status_code=400)
        except httpx.HTTPError as exc:  # the WAN emulator is not reachable (yet)
            return Response(f'{{"error": "wan: {type(exc).__name__}"}}', status_code=503)
        backend.bandwidth.report(beat.node, beat.cluster, beat.links)
        return Response(b'{"ok":true}', media_type="application/json")

    async def state(_: Request) -> Response:
        nodes = {
            r.name: {
                "cluster": r.cluster,
                "role": r.role,
                "alive": r.alive,
                "draining": r.draining,
                "url": r.url,
                "served": r.served,
                "failures": r.failures,
                "prefill_inflight": r.prefill_inflight,
                "decode_active": r.decode_active,
            }
            for r in backend.node_records()
        }
        links = {
            s.name: {
                "egress_gbps": s.egress_gbps,
                "bytes_total": s.bytes_total,
                "capacity_gbps": s.capacity_gbps,
            }
            for s in backend.bandwidth.links.values()
        }
        history = backend.rebalancer.history if backend.rebalancer is not None else []
        body = {
            "nodes": nodes,
            "links": links,
            "policy": backend.policy_name,
            "threshold_tokens": backend.threshold_tokens,
            "offload_fraction": backend.offload_fraction(),
            "index_blocks": {n: backend.members.index.blocks_held(n) for n in nodes},
            "rebalances": history,
            "control": control_state(backend),
            "routed": len(backend.route_s),
            "route_ms": _percentiles_ms(backend.route_s),
            "relays": {r.name: r.relays for r in backend.node_records()},
        }
        return Response(msgspec.json.encode(body), media_type="application/json")

    async def policy(request: Request) -> Response:
        try:
            body = msgspec.json.decode(await request.body())
            backend.set_policy(str(body["name"]), body.get("params"))
        except (msgspec.DecodeError, KeyError, TypeError, ValueError, UsageError) as exc:
            return Response(
                msgspec.json.encode({"error": str(exc)}),
                status_code=400,
                media_type="application/json",
            )
        return Response(
            msgspec.json.encode({"policy": backend.policy_name}), media_type="application/json"
        )

    async def role(request: Request) -> Response:
        """Drain a node and switch its role (what the rebalancer does), e.g. for tests."""
        try:
            body = msgspec.json.decode(await request.body())
            node, new_role = str(body["node"]), str(body["role"])
            if node not in backend.members.nodes or new_role not in ("prefill", "decode"):
                raise ValueError(f"unknown node {node!r} or role {new_role!r}")
            await backend.change_role(node, new_role)
        except (msgspec.DecodeError, KeyError, TypeError, ValueError, httpx.HTTPError) as exc:
            return Response(
                msgspec.json.encode({"error": str(exc)}),
                status_code=400,
                media_type="application/json",
            )
        return Response(
            msgspec.json.encode({"node": node, "role": new_role}), media_type="application/json"
        )

    async def link(request: Request) -> Response:
        """Change a link's modelled rate live (`prfaas link set`)."""
        from prfaas.router.linkctl import set_link_rate

        try:
            body = msgspec.json.decode(await request.body())
            gbps = float(body["gbps"])
            src, dst = body.get("src"), body.get("dst")
            done = await set_link_rate(backend, gbps, src, dst)
        except (msgspec.DecodeError, KeyError, TypeError, ValueError, httpx.HTTPError) as exc:
            return Response(
                msgspec.json.encode({"error": str(exc)}),
                status_code=400,
                media_type="application/json",
            )
        return Response(msgspec.json.encode({"links": done}), media_type="application/json")

    async def decisions(request: Request) -> Response:
        """Routing decisions in order (?since=SEQ for those after SEQ); see decision_log.py."""
        try:
            since = int(request.query_params.get("since", "0"))
        except ValueError:
            return Response(b'{"error": "since must be an integer"}', status_code=400)
        log_ = backend.decision_log
        body = {"count": log_.count, "decisions": log_.since(since)}
        return Response(msgspec.json.encode(body), media_type="application/json")

    app.add_api_route("/internal/decisions", decisions, methods=["GET"], include_in_schema=False)
    app.add_api_route("/internal/role", role, methods=["POST"], include_in_schema=False)
    app.add_api_route("/internal/link", link, methods=["POST"], include_in_schema=False)
    app.add_api_route("/internal/policy", policy, methods=["POST"], include_in_schema=False)
    app.add_api_route("/internal/heartbeat", heartbeat, methods=["POST"], include_in_schema=False)
    app.add_api_route("/internal/state", state, methods=["GET"], include_in_schema=False)
    return app, backend


def _percentiles_ms(samples: Any) -> dict[str, float]:
    values = sorted(samples)
    if not values:
        return {}
    return {
        f"p{q}": round(1e3 * values[min(len(values) - 1, q * len(values) // 100)], 4)
        for q in (50, 90, 99)
    }


async def maintenance_loop(backend: RouterBackend, period_s: float) -> None:
    """Expire silent nodes, decay idle link rates, refresh the queue/role/link gauges."""
    m = backend.metrics
    while True:
        await asyncio.sleep(period_s)
        for name in backend.members.expire():
            log.warning("node %s stopped heartbeating: marked dead", name)
        backend.bandwidth.decay()
        if m is None:
            continue
        for r in backend.node_records():
            queued = r.prefill_inflight if r.role == "prefill" else r.decode_active
            m.set_queue(r.cluster, r.name, queued, r.prefill_tokens)
            m.set_node_role(r.cluster, r.name, r.role)
        for s in backend.bandwidth.links.values():
            m.set_link(s.name, s.egress_gbps, s.capacity_gbps)


async def run_router(
    cfg: DeploymentConfig, ready_file: Path | None, wan_url: str = "", port: int | None = None
) -> None:
    from prfaas.worker.app import bind_socket, serve_uvicorn, write_ready

    app, backend = build_router_app(cfg, wan_url)
    sock = bind_socket(cfg.router.host, cfg.router.port if port is None else port)
    url = f"http://{cfg.router.host}:{sock.getsockname()[1]}"
    tasks = [asyncio.create_task(maintenance_loop(backend, cfg.router.heartbeat_s))]
    if cfg.router.rebalance_s > 0:
        from prfaas.router.rebalancer import rebalance_loop

        tasks.append(asyncio.create_task(rebalance_loop(backend, cfg.router.rebalance_s)))
    if cfg.control.bandwidth_schedule:
        from prfaas.router.linkctl import schedule_loop

        tasks.append(asyncio.create_task(schedule_loop(backend)))
    write_ready(ready_file, {"url": url})
    try:
        await serve_uvicorn(app, sock)
    finally:
        for t in tasks:
            t.cancel()
            with contextlib.suppress(BaseException):
                await t
        await backend.close()
