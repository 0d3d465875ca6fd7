"""The router process: the public OpenAI app over RouterBackend, the control listener, monitors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from prfaas.deploy.config import DeploymentConfig
from prfaas.router.backend import RouterBackend
from prfaas.security.tls import Pki
from prfaas.server.app import PublicOptions

log = logging.getLogger(__name__)
CLOSE_S = 3.0  # leaving etcd (resign, revoke) on a clean stop
SETTLE_S = 3.0  # at most this long to hear the registered nodes before serving


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


def build_router_app(
    cfg: DeploymentConfig, wan_url: str = "", tls: Any = None
) -> tuple[FastAPI, RouterBackend]:
    """The public app (OpenAI API; /health, /metrics, /dashboard as configured) and its backend.
    Nothing /internal/ is on it: see build_control_app."""
    from prfaas.router.admission import screen
    from prfaas.server.app import create_app
    from prfaas.server.auth import ApiKeys
    from prfaas.server.generation import refusal
    from prfaas.server.metrics import ServerMetrics

    metrics = ServerMetrics()
    backend = RouterBackend(cfg, metrics, wan_url, tls)
    sec, lim = cfg.security, cfg.limits
    app = create_app(
        backend,
        model_name=cfg.engine.model,
        max_context_tokens=backend.max_context_tokens,
        metrics=metrics,
        dashboard=RouterDashboard(backend) if sec.public_dashboard else None,
        public=PublicOptions(
            metrics=sec.public_metrics,
            dashboard=sec.public_dashboard,
            max_tokens=lim.max_tokens,
            max_prompt_tokens=lim.max_prompt_tokens,
        ),
    )
    keys = ApiKeys.from_config(cfg)
    gate = keys.wrap(app, lim.max_body_bytes, lim.max_concurrent_per_key,
                     lim.tokens_per_s_per_key, lambda reason: backend.count("shed", reason),
                     screen=lambda: refusal(lambda: screen(backend)))
    return gate, backend  # type: ignore[return-value]


async def maintenance_loop(backend: RouterBackend, period_s: float) -> None:
    """Expire nodes whose telemetry stopped, decay idle link rates, refresh the gauges."""
    m = backend.metrics
    while True:
        await asyncio.sleep(period_s)
        for name in backend.members.expire():
            log.warning("node %s stopped sending telemetry: marked dead", name)
        backend.bandwidth.decay()
        if m is None:
            continue
        for r in backend.node_records():
            queued = r.prefill_inflight if r.role == "prefill" else r.decode_active
            m.set_queue(r.cluster, r.name, queued, r.prefill_tokens)
            m.set_node_role(r.cluster, r.name, r.role, up=r.alive)
        for s in backend.bandwidth.links.values():
            m.set_link(s.name, s.egress_gbps, s.capacity_gbps)


async def run_router(
    cfg: DeploymentConfig,
    ready_file: Path | None,
    wan_url: str = "",
    port: int | None = None,
    pki: Pki | None = None,
    etcd_url: str = "",
    name: str = "",
    control_port: int | None = None,
    host: str = "",
) -> None:
    """Two listeners: the public OpenAI API (plain HTTP, API keys) and the control listener
    (mutual TLS: the operator's policy/role/state calls). Membership comes from etcd."""
    from prfaas.router.cluster_members import RouterCluster
    from prfaas.router.control import build_control_app
    from prfaas.security.asgi import Guard, make_server, serve_many
    from prfaas.worker.app import bind_socket, write_ready

    tls = pki.client if pki is not None else None
    app, backend = build_router_app(cfg, wan_url, tls)
    control = build_control_app(backend, Guard(pki is None))
    r = cfg.router
    # `host` (a replica on its own address) replaces the file's bind and advertised addresses.
    public_host, control_host, advertise = (host, host, host) if host else (
        r.host, r.control_host, r.advertise)
    public_sock = bind_socket(public_host, r.port if port is None else port)
    # A restarted router gets the ports it had (`prfaas up` pins them): clients and workers
    # keep dialing the same addresses.
    control_sock = bind_socket(
        control_host, r.control_port if control_port is None else control_port
    )
    url = f"http://{public_host}:{public_sock.getsockname()[1]}"
    scheme = "https" if pki is not None else "http"
    control_url = f"{scheme}://{advertise}:{control_sock.getsockname()[1]}"
    backend.cluster = RouterCluster(backend, etcd_url, pki, name)
    await backend.cluster.start()
    # Connections queue on the bound socket meanwhile (HAProxy's included): delayed, not refused.
    waited = await backend.cluster.settled(min(SETTLE_S, max(1.0, 2 * cfg.router.dead_after_s)))
    (log.warning if waited > 1.0 else log.info)(
        "serving: the nodes' telemetry came %.2f s after joining etcd", waited)
    tasks = [asyncio.create_task(maintenance_loop(backend, cfg.router.heartbeat_s))]
    if backend.warmup == "pending":  # a real engine: measured once its nodes are up, then planned
        from prfaas.router.warmup import run_warmup

        tasks.append(asyncio.create_task(run_warmup(backend)))
    if cfg.router.rebalance_s > 0:
        from prfaas.router.rebalancer import rebalance_loop

        tasks.append(asyncio.create_task(rebalance_loop(backend, cfg.router.rebalance_s)))
    if cfg.control.bandwidth_schedule:
        from prfaas.router.linkctl import schedule_loop

        tasks.append(asyncio.create_task(schedule_loop(backend)))
    write_ready(ready_file, {"url": url, "control_url": control_url})
    limit = cfg.limits.max_connections
    try:
        await serve_many([
            (make_server(app, None, limit_concurrency=limit), public_sock),
            (make_server(control, pki.server if pki else None, limit_concurrency=limit),
             control_sock),
        ])
    finally:
        for t in tasks:
            t.cancel()
            with contextlib.suppress(BaseException):
                await t
        with contextlib.suppress(BaseException):  # bounded: etcd may be stopping too
            await asyncio.wait_for(backend.cluster.close(), CLOSE_S)
        await backend.close()
