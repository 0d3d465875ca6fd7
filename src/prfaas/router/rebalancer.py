"""The long-timescale loop (paper §3.4.3): observed lengths -> policy.rebalance -> role changes.

The router keeps a sliding window of what it served (uncached lengths, output lengths), hands it
with the deployment's hardware facts to the same `policy.rebalance` the simulator calls, and
applies the decision: a new threshold t at once, and PD nodes converted between prefill and decode
one at a time, each draining first so no admitted request is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from prfaas.deploy.config import DeploymentConfig
from prfaas.worker.messages import RoleChange

if TYPE_CHECKING:
    from prfaas.planner.scenario import Scenario
    from prfaas.router.backend import RouterBackend
    from prfaas.router.membership import NodeRecord

log = logging.getLogger(__name__)
WINDOW_PERIODS = 5


def scenario_from_deployment(cfg: DeploymentConfig) -> Scenario | None:
    """The planner's view of this deployment's hardware (emulated engine only: the transformers
    engine runs real CPU compute, which has no profile to plan with)."""
    if cfg.engine.kind != "emulated":
        return None
    from prfaas.deploy.hardware import node_decode_profile, node_prefill_profile
    from prfaas.planner.scenario import Scenario
    from prfaas.profiles import get_hardware, get_kv_profile
    from prfaas.workload.lengths import EmpiricalLengths

    remote = [n for c in cfg.clusters if c.role == "prfaas" for n in c.nodes]
    pd = [n for c in cfg.clusters if c.role == "pd" for n in c.nodes]
    if not pd:
        return None
    pd_prefill, decode = node_prefill_profile(pd[0]), node_decode_profile(pd[0])
    remote_prefill = node_prefill_profile(remote[0]) if remote else pd_prefill
    if pd_prefill is None or decode is None or remote_prefill is None:
        return None
    link = cfg.links[0].gbps if cfg.links else 0.0
    return Scenario(
        name=cfg.name,
        prfaas_instances=len(remote),
        pd_instances=len(pd),
        homogeneous_instances=len(pd),
        prfaas_prefill=remote_prefill,
        pd_prefill=pd_prefill,
        decode=decode,
        kv_size=get_kv_profile(cfg.engine.kv_profile or cfg.engine.model),
        link_gbps=link,
        lengths=EmpiricalLengths([1.0]),
        output_tokens=1.0,
        prfaas_hardware=get_hardware(remote[0].hardware if remote else pd[0].hardware),
        pd_hardware=get_hardware(pd[0].hardware),
    )


@dataclass(slots=True)
class Rebalancer:
    backend: RouterBackend
    scenario: Scenario | None
    min_samples: int = 200
    hysteresis: float = 0.10
    window: deque[tuple[tuple[int, ...], tuple[int, ...]]] = field(
        default_factory=lambda: deque(maxlen=WINDOW_PERIODS)
    )
    history: list[dict[str, Any]] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def step(self, period_s: float) -> dict[str, Any] | None:
        """One period: re-plan on the window, apply the decision; returns it when it changed."""
        from prfaas.policy.rebalance import (
            DeploymentState,
            ObservedStats,
            RebalanceParams,
            rebalance,
        )

        b = self.backend
        self.window.append((tuple(b.observed_inc), tuple(b.observed_out)))
        b.observed_inc.clear()
        b.observed_out.clear()
        incs = tuple(x for period, _ in self.window for x in period)
        outs = [x for _, period in self.window for x in period]
        if self.scenario is None or not outs or any(r.converting for r in b.node_records()):
            return None
        n_remote, n_p, n_d = self._counts()
        stats = ObservedStats(
            period_s * len(self.window),
            incs,
            sum(outs) / len(outs),
            self.scenario.link_gbps or 1e-6,
        )
        state = DeploymentState(n_remote, n_p, n_d, b.params.threshold_tokens)
        decision = rebalance(
            stats, state, RebalanceParams(self.scenario, self.hysteresis, 1, self.min_samples)
        )
        if not decision.changed and decision.threshold_tokens == state.threshold_tokens:
            return None
        b.params = replace(b.params, threshold_tokens=decision.threshold_tokens)
        b.threshold_tokens = decision.threshold_tokens
        record = {
            "time_s": time.time(),
            "reason": decision.reason,
            "n_p": decision.n_p,
            "n_d": decision.n_d,
            "threshold_tokens": decision.threshold_tokens,
        }
        self.history.append(record)
        log.warning("rebalance: %s", decision.reason)
        self.window.clear()  # the new configuration changes what is observed
        moves = [("prefill", "decode")] * decision.changes.prefill_to_decode + [
            ("decode", "prefill")
        ] * decision.changes.decode_to_prefill
        for old, new in moves:
            node = self._pick(old)
            if node is not None:
                task = asyncio.create_task(b.change_role(node, new))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        return record

    def _counts(self) -> tuple[int, int, int]:
        recs = [r for r in self.backend.node_records() if r.alive]
        remote = sum(1 for r in recs if self.backend.cfg.cluster(r.cluster).role == "prfaas")
        pd = [r for r in recs if self.backend.cfg.cluster(r.cluster).role == "pd"]
        n_p = sum(1 for r in pd if r.role == "prefill")
        return remote, n_p, len(pd) - n_p

    def _pick(self, role: str) -> str | None:
        """The least-loaded PD node of `role`, never the last one of its role."""
        b = self.backend
        cands = [
            r
            for r in b.node_records()
            if r.usable and r.role == role and b.cfg.cluster(r.cluster).role == "pd"
        ]
        if len(cands) <= 1:
            return None

        def load(r: NodeRecord) -> tuple[int, str]:
            return (r.prefill_tokens if role == "prefill" else r.decode_active, r.name)

        return min(cands, key=load).name


async def change_role(backend: RouterBackend, node: str, role: str) -> None:
    """Drain `node` (the router routes nothing new to it; the worker finishes what it holds),
    then switch its role."""
    rec = backend.members.nodes[node]
    if rec.role == role:
        return
    rec.converting = True
    try:
        resp = await backend.dispatch.post(f"{rec.url}/role", RoleChange(role))
        resp.raise_for_status()
        rec.role, rec.draining = role, False
        reply = resp.json()
        rec.role_version = int(reply.get("role_version", rec.role_version))
        rec.max_batch = int(reply.get("max_batch", 1))
    finally:
        rec.converting = False


async def rebalance_loop(backend: RouterBackend, period_s: float) -> None:
    cfg = backend.cfg
    rb = Rebalancer(backend, scenario_from_deployment(cfg), cfg.router.rebalance_min_samples)
    backend.rebalancer = rb
    if rb.scenario is None:
        log.warning(
            "rebalancer off: the %s engine has no hardware profile to plan with", cfg.engine.kind
        )
        return
    while True:
        await asyncio.sleep(period_s)
        try:
            await rb.step(period_s)
        except Exception:
            log.exception("rebalance step failed")
