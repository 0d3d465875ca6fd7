"""The router's control driver (paper §3.4.3): feed each period's observations to the control
core (the same `prfaas.control.control_step` the simulator calls) and apply its decision: the new
t, bandwidth table and service times at once, and PD nodes converted between prefill and decode,
each draining first so no admitted request is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prfaas.control import (
    ControlConfig,
    ControlState,
    LinkSample,
    NodeLoad,
    ObservationWindow,
    PeriodObservation,
    PrefillSample,
    control_step,
)
from prfaas.control.loop import estimate_summary, estimates
from prfaas.deploy.planning import control_config, scenario_from_deployment

if TYPE_CHECKING:
    from prfaas.router.backend import RouterBackend

log = logging.getLogger(__name__)
SAMPLE_S = 1.0  # link telemetry sampling interval (emulated seconds)
OBSERVATION_WINDOW = 20_000  # samples per buffer per period (a period rarely sees more)


def _window() -> deque[Any]:
    return deque(maxlen=OBSERVATION_WINDOW)


@dataclass(slots=True)
class Observations:
    """The router's per-period buffers (filled as requests complete and links are sampled);
    each keeps the newest OBSERVATION_WINDOW samples, so with the rebalancer off (nothing takes
    them) they stay bounded."""

    inc: deque[int] = field(default_factory=_window)
    out: deque[int] = field(default_factory=_window)
    prefill: deque[PrefillSample] = field(default_factory=_window)
    link: deque[LinkSample] = field(default_factory=_window)

    def take(self, period_s: float) -> PeriodObservation:
        obs = PeriodObservation(
            period_s, tuple(self.inc), tuple(self.out), tuple(self.prefill), (), tuple(self.link)
        )
        self.inc.clear()
        self.out.clear()
        self.prefill.clear()
        self.link.clear()
        return obs


def link_sample(backend: RouterBackend) -> LinkSample:
    """Total egress of the links leaving PrfaaS clusters, in modelled units."""
    remote = {c.name for c in backend.cfg.clusters if c.role == "prfaas"}
    links = [s for s in backend.bandwidth.links.values() if s.src in remote]
    return LinkSample(
        sum(s.capacity_gbps for s in links),
        sum(s.egress_gbps for s in links),
        sum(s.in_flight_bytes for s in links),
    )


@dataclass(slots=True)
class Rebalancer:
    backend: RouterBackend
    config: ControlConfig | None
    window: ObservationWindow = field(default_factory=ObservationWindow)
    history: list[dict[str, Any]] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    estimates: dict[str, Any] = field(default_factory=dict)  # the latest, for /metrics

    def state(self) -> ControlState:
        b = self.backend
        recs = [r for r in b.node_records() if r.alive]
        role = {c.name: c.role for c in b.cfg.clusters}
        pd = []
        for r in recs:
            if role[r.cluster] != "pd":
                continue
            load = r.prefill_tokens if r.role == "prefill" else r.decode_active
            pd.append(NodeLoad(r.name, r.role, float(load), r.draining or r.converting))
        n_remote = sum(1 for r in recs if role[r.cluster] == "prfaas")
        converting = any(r.converting for r in b.node_records())
        pd.sort(key=lambda n: n.name)
        return ControlState(n_remote, tuple(pd), b.params.threshold_tokens, converting)

    async def step(
        self, period_s: float, obs: PeriodObservation | None = None
    ) -> dict[str, Any] | None:
        """One period: re-plan on the window, apply the decision; returns it when it changed."""
        b = self.backend
        obs = obs if obs is not None else b.observed.take(period_s)
        if self.config is None:
            return None
        window = self.window.push(obs, self.config.window_periods)
        self.estimates = estimate_summary(*estimates(window, self.config))
        if b.metrics is not None:
            b.metrics.set_control(self.estimates)
        self.window, decision = control_step(self.window, obs, self.state(), self.config, b.params)
        if decision is None:
            return None
        b.apply_params(decision.params)
        record = decision.record(time.time())
        self.history.append(record)
        log.warning("rebalance: %s", decision.reason)
        for node, role in decision.conversions:
            task = asyncio.create_task(b.change_role(node, role))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return record


def control_state(backend: RouterBackend) -> dict[str, Any]:
    """The startup plan and the parameters in force (for /internal/state)."""
    p = backend.params
    return {
        "startup": backend.plan_line,
        "warmup": backend.warmup,
        "warmup_fit": backend.warmup_fit,
        "threshold_tokens": p.threshold_tokens,
        "threshold_by_gbps": [list(x) for x in p.threshold_by_gbps],
        "remote_service_s": p.remote_service_s,
        "local_service_s": p.local_service_s,
    }


def make_rebalancer(backend: RouterBackend) -> Rebalancer:
    """On the scenario the startup plan used (a real engine's: its warm-up's profiles)."""
    scn = (
        backend.scenario if backend.scenario is not None else scenario_from_deployment(backend.cfg)
    )
    return Rebalancer(backend, control_config(backend.cfg, scn) if scn is not None else None)


async def change_role(backend: RouterBackend, node: str, role: str) -> None:
    """Assign `node` a new role in etcd: every replica routes nothing new to it, the worker
    finishes what it holds, switches, and rewrites its record (router/cluster_members.py)."""
    if backend.members.nodes[node].role == role:
        return
    if backend.cluster is None:
        raise RuntimeError("roles are assigned through etcd: the router has no cluster link")
    await backend.cluster.assign_role(node, role, backend.cfg.router.request_timeout_s)


async def rebalance_loop(backend: RouterBackend, period_s: float) -> None:
    """Sample the links every second; run the control step every period, on the leader replica
    only (an etcd lease election: exactly one replica re-plans at a time)."""
    while backend.warmup in ("pending", "running"):  # a real engine's profiles come from it
        await asyncio.sleep(SAMPLE_S / 2)
    rb = make_rebalancer(backend)
    backend.rebalancer = rb
    if rb.config is None:
        log.warning(
            "rebalancer off: the %s engine has no profile to plan with (warm-up: %s)",
            backend.cfg.engine.kind,
            backend.warmup,
        )
        return
    tick = min(SAMPLE_S, period_s)
    elapsed = 0.0
    while True:
        await asyncio.sleep(tick)
        backend.observed.link.append(link_sample(backend))
        elapsed += tick
        if elapsed + 1e-9 < period_s:
            continue
        elapsed = 0.0
        if backend.cluster is not None and not backend.cluster.is_leader:
            backend.observed.take(period_s)  # another replica re-plans; its policy arrives here
            continue
        try:
            await rb.step(period_s * backend.time_scale)
        except Exception:
            log.exception("rebalance step failed")
