"""Regenerate the simulator's test fixtures (run from the repository root):

    .venv/bin/python tests/data/make_fixtures.py

mini_trace.jsonl: a small synthetic Mooncake-format trace (made here, seeded; not Kimi data) with
multi-turn sessions, so prefixes are shared and cross-cluster cache pulls happen.
golden_decisions.json: routing decisions recorded from simulator runs, each with the same state
expressed as live-router inputs (heartbeats, transfer telemetry, global-index matches).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "src"))

from prfaas.core.view import ClusterView  # noqa: E402
from prfaas.sim.runner import RunConfig  # noqa: E402

BLOCK = 512
GOLDEN_RUNS = [
    {"policy": "prfaas", "requests": 110, "speedup": 4.0, "drop": [20.0, 40.0, 0.05]},
    {"policy": "prfaas-static", "requests": 25, "speedup": 4.0, "drop": [20.0, 40.0, 0.05]},
    {"policy": "naive", "requests": 15, "speedup": 4.0, "drop": [20.0, 40.0, 0.05]},
]


def make_trace(path: Path, sessions: int = 60, turns: int = 5, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    next_id = 1
    rows = []
    for _ in range(sessions):
        start = float(rng.uniform(0, 200))
        length = int(np.clip(rng.lognormal(9.3, 0.9), 600, 60_000))
        blocks: list[int] = [0]  # a system prompt shared by every session
        t = start
        for _turn in range(turns):
            need = -(-length // BLOCK)
            while len(blocks) < need:
                blocks.append(next_id)
                next_id += 1
            out = int(rng.integers(20, 600))
            rows.append(
                {
                    "timestamp": round(t * 1000),
                    "input_length": length,
                    "output_length": out,
                    "hash_ids": blocks[:need],
                }
            )
            # The next turn carries this prompt (its full blocks hash equal; the partial last
            # block changes), the answer and a new message.
            blocks = blocks[: length // BLOCK]
            length += out + int(rng.integers(200, 12_000))
            t += float(rng.uniform(10, 40))
    rows.sort(key=lambda r: r["timestamp"])
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def run_config(run: dict[str, object], trace: Path) -> RunConfig:
    """The simulator configuration a golden run used (the test rebuilds the same)."""
    from prfaas.sim.bandwidth import BandwidthSchedule
    from prfaas.sim.deployments import SimOptions

    drop = run["drop"]
    assert isinstance(drop, list)
    opts = SimOptions(
        bandwidth=BandwidthSchedule((tuple(drop),)),
        rebalance_period_s=30.0,
        cache_gib_per_node=64.0,
    )
    return RunConfig(
        policies=(str(run["policy"]),),
        trace=trace,
        speedup=float(run["speedup"]),
        requests=int(run["requests"]),
        options=opts,
    )  # type: ignore[call-overload]


def live_inputs(view: ClusterView, step: int) -> dict[str, object]:
    """The same state as a live router would receive it."""
    members = []
    for c in view.clusters:
        for i, n in enumerate(c.nodes):
            beat = view.now_s - 0.5 * ((step + i) % 3)  # heartbeats arrive at different times
            members.append(
                [
                    n.node_id,
                    c.name,
                    c.role,
                    n.role,
                    beat,
                    n.queue_len,
                    n.queued_tokens,
                    n.running,
                    n.max_batch,
                    n.free_kv_bytes,
                    n.draining,
                ]
            )
    # A node that stopped heartbeating: the router adapter must leave it out.
    members.append(["pd-99", "pd", "pd", "prefill", view.now_s - 60.0, 0, 0, 0, 1, 0, False])
    telemetry = [
        [
            lk.src,
            lk.dst,
            lk.capacity_gbps,
            lk.egress_gbps,
            lk.in_flight_bytes,
            lk.rtt_ms,
            lk.retransmit_rate,
        ]
        for lk in view.links
    ]
    index = {m.node or m.cluster: m.tokens // BLOCK for m in view.matches}
    index["pd-99"] = 3  # cached on the dead node: unreachable
    return {"now_s": view.now_s, "members": members, "telemetry": telemetry, "index": index}


def _record_steps(setup: object, requests: list[object]) -> list[dict[str, object]]:
    from dataclasses import asdict

    from prfaas.sim.engine import Simulation

    steps: list[dict[str, object]] = []
    holder: list[Simulation] = []
    last_params: list[object] = [None]

    def hook(view, spec, placement):  # type: ignore[no-untyped-def]
        step = live_inputs(view, len(steps))
        # Requests are rebuilt from mini_trace.jsonl by id (their hashes are long).
        step["request_id"] = spec.request_id
        params = asdict(holder[0].params)
        if params != last_params[0]:
            step["params"] = params  # only when it changed (the test carries it forward)
            last_params[0] = params
        step["placement"] = asdict(placement)
        steps.append(step)

    holder.append(Simulation(setup, requests, on_decision=hook))  # type: ignore[arg-type]
    holder[0].run()
    return steps


def record(trace: Path) -> dict[str, object]:
    from prfaas.sim.deployments import build_setup
    from prfaas.sim.runner import make_requests, prepare

    runs = []
    for run in GOLDEN_RUNS:
        cfg = run_config(run, trace)
        prep = prepare(cfg)
        setup = build_setup(prep.scenario, prep.plan, cfg.policies[0], cfg.options)
        steps = _record_steps(setup, make_requests(cfg, prep))
        runs.append({"run": run, "steps": steps})
    return {"block_tokens": BLOCK, "heartbeat_timeout_s": 5.0, "runs": runs}


if __name__ == "__main__":
    trace_path = HERE / "mini_trace.jsonl"
    make_trace(trace_path)
    doc = record(trace_path)
    (HERE / "golden_decisions.json").write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    steps = [s for r in doc["runs"] for s in r["steps"]]  # type: ignore[union-attr]
    pulls = sum(1 for s in steps if s["placement"]["cache_pull"])
    scarce = sum(1 for s in steps if "scarce" in s["placement"]["reason"])
    moved = sum(1 for s in steps if "t x" in s["placement"]["reason"])
    print(
        f"{len(steps)} decisions: {pulls} cache pulls, {scarce} bandwidth-scarce, "
        f"{moved} threshold-trigger adjustments"
    )
