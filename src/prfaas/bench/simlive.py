"""Sim vs live: one request plan through a live emulated deployment and through the simulator of
the same deployment (prfaas.sim.from_deployment), joined per request.

Live decisions come from the router's `GET /internal/decisions`, joined to the plan by the `seed`
tag the bench sends; simulated ones from the simulator's decision hook. Both see the same prompts
(the simulator hashes the very token blocks the router hashes) at the same send times, converted
to modelled time with the deployment's time_scale. Times reported here are emulated seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from prfaas.bench.client import run_plan
from prfaas.bench.linkwatch import LinkSample, LinkWatch
from prfaas.bench.workload import PlannedRequest
from prfaas.cache.hashing import token_block_hashes
from prfaas.core.lifecycle import Phase
from prfaas.core.request import RequestSpec
from prfaas.core.view import ClusterView
from prfaas.deploy.config import DeploymentConfig
from prfaas.errors import UsageError
from prfaas.policy.placement import Placement
from prfaas.router.decision_log import view_summary
from prfaas.sim.admission import SHED_PREFIX
from prfaas.sim.engine import Simulation
from prfaas.sim.from_deployment import (
    emulated_s,
    modelled_s,
    setup_from_deployment,
    time_scale,
)
from prfaas.worker.bytetok import ByteTokenizer

FIELDS = ("offloaded", "prefill_cluster", "prefill_node", "decode_node")


@dataclass(frozen=True, slots=True)
class Decided:
    """One request's routing decision and TTFT (emulated seconds; None if it did not finish)."""

    index: int
    input_tokens: int
    offloaded: bool
    prefill_cluster: str
    prefill_node: str
    decode_node: str
    reason: str
    threshold_tokens: int
    ttft_s: float | None
    view: dict[str, Any]
    detail: dict[str, Any]  # where it ran, reused tokens, queue/compute seconds (emulated)
    planned_threshold_tokens: int = 0  # the threshold search's t (before per-request triggers)


def declump(plan: Sequence[PlannedRequest], min_gap_s: float) -> list[PlannedRequest]:
    """Spread requests that share a send time `min_gap_s` apart (the trace has bursts of 10-16
    requests with one timestamp): simultaneous sends reach the router in a racy order, and a
    decision that depends on queues depends on that order. Both sides get the spread times."""
    out: list[PlannedRequest] = []
    last = float("-inf")
    for req in plan:
        at = max(req.send_at_s, last + min_gap_s)
        out.append(replace(req, send_at_s=at))
        last = at
    return out


def sim_requests(cfg: DeploymentConfig, plan: Sequence[PlannedRequest]) -> list[RequestSpec]:
    """The plan as the simulator's requests: the router's block hashes of the same prompt text,
    arrivals in modelled seconds, KV size unknown (0), as the live router sees them."""
    tok = ByteTokenizer()
    out = []
    for req in sorted(plan, key=lambda r: (r.send_at_s, r.index)):
        tokens = tok.encode(req.prompt())
        hashes = tuple(token_block_hashes(tokens, cfg.block_tokens))
        arrival = modelled_s(cfg, req.send_at_s)
        out.append(RequestSpec(f"r{req.index}", arrival, len(tokens), req.max_tokens, hashes))
    return out


def run_sim(
    cfg: DeploymentConfig, policy: str, plan: Sequence[PlannedRequest]
) -> dict[int, Decided]:
    return simulate(cfg, policy, plan)[0]


def simulate(
    cfg: DeploymentConfig, policy: str, plan: Sequence[PlannedRequest], pipeline_s: float = 0.0
) -> tuple[dict[int, Decided], dict[str, float]]:
    """Per-request decisions and the run's summary (emulated units, the bench's definitions:
    throughput = finished requests / (first arrival -> last finish)). `pipeline_s`: the live
    pipeline's latency outside the modelled stages (emulated s; see pipeline_latency_s)."""
    setup = replace(setup_from_deployment(cfg, policy), pipeline_s=pipeline_s * time_scale(cfg))
    seen: dict[str, tuple[Placement, dict[str, Any]]] = {}

    def hook(view: ClusterView, spec: RequestSpec, placement: Placement) -> None:
        seen[spec.request_id] = (placement, view_summary(view))

    result = Simulation(setup, sim_requests(cfg, plan), on_decision=hook).run()
    m: dict[str, Any] = result.metrics()
    dist: dict[str, Any] = m["ttft_s"]
    summary = {
        "throughput_rps": float(m["throughput"]["requests_per_s"]) * time_scale(cfg),
        "ttft_p50_s": emulated_s(cfg, float(dist["p50"] or 0.0)),
        "ttft_p99_s": emulated_s(cfg, float(dist["p99"] or 0.0)),
        "offload": float(m["offload_fraction"]),
    }
    out: dict[int, Decided] = {}
    for rec in result.records:
        if rec.reason.startswith(SHED_PREFIX):
            continue  # shed (429): the live router logs no decision for it either
        p, view = seen[rec.spec.request_id]
        index = int(rec.spec.request_id[1:])
        done = rec.phase == Phase.FINISHED
        ttft = emulated_s(cfg, rec.ttft_s) if done else None
        t = rec.time
        detail = {
            "ran_on": rec.prefill_node,
            "reused_tokens": rec.prefix_tokens,
            "queue_s": emulated_s(cfg, t(Phase.PREFILLING) - t(Phase.ROUTED)),
            "compute_s": emulated_s(cfg, t(Phase.TRANSFERRING) - t(Phase.PREFILLING)),
            "kv_s": emulated_s(cfg, t(Phase.DECODE_QUEUED) - t(Phase.TRANSFERRING)),
            "admit_s": emulated_s(cfg, t(Phase.DECODING) - t(Phase.DECODE_QUEUED)),
        }
        out[index] = Decided(
            index,
            rec.spec.input_tokens,
            p.offloaded,
            p.prefill_cluster,
            p.prefill_node,
            p.decode_node,
            p.reason,
            p.threshold_tokens,
            ttft,
            view,
            detail,
            p.planned_threshold_tokens,
        )
    return out, summary


def run_live(
    config_path: Path,
    policy: str,
    plan: Sequence[PlannedRequest],
    timeout_s: float = 300.0,
    links: list[LinkSample] | None = None,
) -> dict[int, Decided]:
    """Start the deployment for `policy`, send the plan tagged, read the router's decision log.
    `links`: also poll the router's link counters once a second during the run, into this list."""
    from prfaas.deploy.supervisor import Deployment

    dep = Deployment(config_path, policy)
    url = dep.start()
    try:
        watch = LinkWatch(dep) if links is not None else None
        with watch or contextlib.nullcontext():
            results, _ = asyncio.run(
                run_plan(
                    url,
                    plan,
                    model=dep.cfg.engine.model,
                    endpoint="completions",
                    timeout_s=timeout_s,
                    tag=True,
                )
            )
        if links is not None and watch is not None:
            links.extend(watch.samples)
        answer = dep.control("GET", "/internal/decisions", timeout=30).json()
        log = answer["decisions"]
        if answer["count"] > len(log) and log and log[0]["seq"] > 1:
            raise UsageError(
                f"the router kept only its last {len(log)} of {answer['count']} "
                "decisions: send fewer requests per run"
            )
    finally:
        dep.stop()
    ttft = {r.index: r.ttft_s for r in results if r.ok}
    out: dict[int, Decided] = {}
    for e in log:
        index = e["tag"]
        if index is None or index in out:
            continue  # untagged, or a re-run after a lost decode (the first decision counts)
        out[index] = Decided(
            index,
            e["input_tokens"],
            e["offloaded"],
            e["prefill_cluster"],
            e["prefill_node"],
            e["decode_node"],
            e["reason"],
            e["threshold_tokens"],
            ttft.get(index),
            e["view"],
            {k: e[k] for k in ("ran_on", "reused_tokens", "queue_s", "compute_s", "transfer_s")}
            | {"routed_at_s": e["routed_s"], "first_token_at_s": e.get("first_token_s")},
            e.get("planned_threshold_tokens", 0),
        )
    return out


def pipeline_latency_s(live: dict[int, Decided], sim: dict[int, Decided]) -> float:
    """The live pipeline's latency outside the stages the simulator models, median over requests
    both sides put on the same decode node (emulated s): router-timed routing -> first token,
    less the worker-timed queue, prefill and KV transfer, less the decode admission wait the
    simulator computes for that request (dispatch, the KV's hand-over, the token's way back)."""
    gaps = sorted(
        float(d.detail["first_token_at_s"])
        - float(d.detail["routed_at_s"])
        - float(d.detail["queue_s"])
        - float(d.detail["transfer_s"])
        - float(sim[i].detail["admit_s"])
        for i, d in live.items()
        if d.detail.get("first_token_at_s") is not None
        and d.detail.get("transfer_s") is not None
        and i in sim
        and sim[i].decode_node == d.decode_node
    )
    return gaps[len(gaps) // 2] if gaps else 0.0


def replayed(plan: Sequence[PlannedRequest], live: dict[int, Decided]) -> list[PlannedRequest]:
    """The plan with each request sent when the live router routed it (the earliest routing
    after its planned send fixes the offset): a diagnostic that takes the load generator's and
    the HTTP edge's delays out of the comparison, so what differs is the deployment itself."""
    at = {i: float(d.detail["routed_at_s"]) for i, d in live.items() if "routed_at_s" in d.detail}
    if not at:
        return list(plan)
    offset = min(at[r.index] - r.send_at_s for r in plan if r.index in at)
    out = [replace(r, send_at_s=at[r.index] - offset) if r.index in at else r for r in plan]
    return sorted(out, key=lambda r: r.send_at_s)


def jittered(plan: Sequence[PlannedRequest], max_s: float, seed: int) -> list[PlannedRequest]:
    """The plan with each send delayed by a uniform [0, max_s) draw (seeded): simulated against
    the plan as sent, it measures how far the simulator agrees with itself when its inputs move
    by as little as the live system's timing noise (a ceiling for sim <-> live agreement)."""
    rnd = random.Random(seed)
    out = [replace(r, send_at_s=r.send_at_s + rnd.uniform(0.0, max_s)) for r in plan]
    return sorted(out, key=lambda r: r.send_at_s)


def cause(sim: Decided, live: Decided) -> str:
    """Which part of the two views differs in what the differing decision depends on."""
    sv, lv = sim.view, live.view
    parts = []
    if sim.offloaded != live.offloaded or sim.prefill_cluster != live.prefill_cluster:
        if sv["prefix"] != lv["prefix"]:
            parts.append(f"prefix held: sim {sv['prefix']} live {lv['prefix']}")
        if sim.threshold_tokens != live.threshold_tokens:
            parts.append(f"effective t: sim {sim.threshold_tokens} live {live.threshold_tokens}")
    if sim.prefill_node != live.prefill_node and sv["prefill_queued"] != lv["prefill_queued"]:
        parts.append(f"prefill queues: sim {sv['prefill_queued']} live {lv['prefill_queued']}")
    if sim.decode_node != live.decode_node and sv["decode_load"] != lv["decode_load"]:
        parts.append(f"decode loads: sim {sv['decode_load']} live {lv['decode_load']}")
    return "; ".join(parts) or "same view summary, different decision"


def cause_kind(text: str) -> str:
    """The first view part named by cause(): prefix | effective t | prefill queues | ..."""
    return text.split(":", 1)[0]
