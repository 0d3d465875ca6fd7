"""Routing decision time vs fleet size: views over incremental indexes vs rebuilt node tuples.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_routing.py [--decisions 20000]

A fleet in the paper's proportions (1/3 PrfaaS prefill; PD split 3 prefill : 1 decode) of 12, 120,
1,200 and 12,000 instances with random queues, a cluster-wide prefix match and a node-local one.
Between decisions a few nodes change (as in the simulator: ~5 node updates per request).
- indexed: the cluster views sit on core/fleet.ClusterIndex, updated per changed node (O(log n));
  a decision builds the ClusterView over them and calls the `prfaas` policy;
- rebuilt: what a decision cost before issue 15: a node tuple per cluster rebuilt from every
  node, then the same policy (exhaustive scans);
- router, rebuilt: what router/backend.py did per request before router/fleet_view.py: a
  MembershipRecord per node (router/live_view.py), RouterAdapter.route (sort, views, policy)
  and the decision log's view summary (router/decision_log.py). The router now uses the
  indexes; benchmarks/bench_router_fleet.py times its whole routing function.
Reported: CPU microseconds (process time, so other load on the machine inflates it less) per
decision (view + policy) and per node update, each the median of --repeat rounds in this process
(a round runs every size once, so drifting load hits all sizes alike), and the ratio to the
12-node figure.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from prfaas.core.fleet import ClusterIndex
from prfaas.core.request import RequestSpec
from prfaas.core.view import CacheMatch, ClusterState, ClusterView, LinkView, NodeView
from prfaas.policy import PolicyParams, get_policy
from prfaas.router.adapter import MembershipRecord, RouterAdapter
from prfaas.router.decision_log import view_summary

SIZES = (12, 120, 1_200, 12_000)
LINKS = (
    LinkView("pd", "prfaas", 100.0, 0.0, 0, 10.0, 0.0),
    LinkView("prfaas", "pd", 100.0, 40.0, 0, 10.0, 0.0),
)


def random_node(rng: random.Random, node_id: str, role: str) -> NodeView:
    if role == "prefill":
        q = rng.randrange(4)
        return NodeView(node_id, "prefill", q, q * rng.randrange(1, 30_000), min(q, 1), 1, 0)
    running = rng.randrange(21)
    return NodeView(node_id, "decode", rng.randrange(3), 0, running, 20, rng.randrange(64) << 30)


def fleet(n: int, rng: random.Random) -> dict[str, dict[str, NodeView]]:
    remote = max(n // 3, 1)
    local = n - remote
    out: dict[str, dict[str, NodeView]] = {"prfaas": {}, "pd": {}}
    for i in range(remote):
        out["prfaas"][f"prfaas-{i:05d}"] = random_node(rng, f"prfaas-{i:05d}", "prefill")
    for i in range(local):
        role = "prefill" if i < local * 3 // 4 else "decode"
        out["pd"][f"pd-{i:05d}"] = random_node(rng, f"pd-{i:05d}", role)
    return out


def run(n: int, decisions: int, indexed: bool, seed: int = 0) -> tuple[float, float]:
    """(us per decision, us per node update) for one fleet size and one view kind."""
    rng = random.Random(seed)
    nodes = fleet(n, rng)
    roles = {"prfaas": "prfaas", "pd": "pd"}
    indexes = {c: ClusterIndex(tuple(ns.values())) for c, ns in nodes.items()}
    ids = [(c, i) for c, ns in nodes.items() for i in ns]
    route, params = get_policy("prfaas"), PolicyParams(threshold_tokens=19_400)
    holder = ids[len(ids) // 2]
    matches = (CacheMatch("pd", 4096), CacheMatch(holder[0], 8192, holder[1]))
    reqs = [
        RequestSpec(f"r{i}", 0.0, rng.randrange(128, 100_000), 1024, (), 1 << 30) for i in range(64)
    ]
    changes = [(rng.choice(ids), rng.random()) for _ in range(5 * decisions)]
    t_update = t_decide = 0.0
    for d in range(decisions):
        u0 = time.process_time()
        for (c, i), _ in changes[5 * d : 5 * d + 5]:
            node = random_node(rng, i, nodes[c][i].role)
            nodes[c][i] = node
            if indexed:
                indexes[c].put(node)
        u1 = time.process_time()
        if indexed:
            clusters = tuple(ClusterState(c, roles[c], index=indexes[c]) for c in ("pd", "prfaas"))
        else:
            clusters = tuple(
                ClusterState(c, roles[c], tuple(nodes[c].values())) for c in ("pd", "prfaas")
            )
        view = ClusterView(float(d), clusters, LINKS, matches)
        placement = route(view, reqs[d % len(reqs)], params)
        u2 = time.process_time()
        assert not placement.rejected
        t_update += u1 - u0
        t_decide += u2 - u1
    return 1e6 * t_decide / decisions, 1e6 * t_update / (5 * decisions)


def run_router(n: int, decisions: int, seed: int = 0) -> float:
    """us per decision on the router's previous path (records -> adapter -> log summary)."""
    rng = random.Random(seed)
    nodes = fleet(n, rng)
    adapter, params = RouterAdapter(64, 5.0), PolicyParams(threshold_tokens=19_400)
    ids = [(c, i) for c, ns in nodes.items() for i in ns]
    holder = ids[len(ids) // 2]
    index = {"pd": 64, holder[1]: 128}
    telemetry: list[Any] = []
    reqs = [
        RequestSpec(f"r{i}", 0.0, rng.randrange(128, 100_000), 1024, (), 1 << 30) for i in range(64)
    ]
    total = 0.0
    for d in range(decisions):
        for c, i in (rng.choice(ids) for _ in range(5)):
            nodes[c][i] = random_node(rng, i, nodes[c][i].role)
        t0 = time.process_time()
        members = [
            MembershipRecord(
                v.node_id,
                c,
                c,
                v.role,
                0.0,
                v.queue_len,
                v.queued_tokens,
                v.running,
                v.max_batch,
                v.free_kv_bytes,
                v.draining,
            )
            for c, ns in nodes.items()
            for v in ns.values()
        ]
        view, placement = adapter.route(
            "prfaas", params, reqs[d % 64], 0.0, members, telemetry, index
        )
        view_summary(view)
        total += time.process_time() - t0
        assert not placement.rejected
    return 1e6 * total / decisions


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decisions", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; median of {args.repeat} runs, {args.decisions:,} decisions\n"
    )
    print(
        "| nodes | indexed us/decision | x 12 | us/node update | rebuilt us/decision | x 12 "
        "| router (rebuilt) us/decision |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    results: dict[tuple[int, bool], list[tuple[float, float]]] = {}
    live: dict[int, list[float]] = {}
    for r in range(args.repeat):
        for n in SIZES:
            live.setdefault(n, []).append(run_router(n, max(args.decisions // 10, 100), seed=r))
            for indexed in (True, False):
                many = indexed or n <= 1_200
                decisions = args.decisions if many else max(args.decisions // 10, 200)
                results.setdefault((n, indexed), []).append(run(n, decisions, indexed, seed=r))
    med = {
        k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
        for k, v in results.items()
    }
    for n in SIZES:
        fast, slow = med[(n, True)], med[(n, False)]
        print(
            f"| {n:,} | {fast[0]:.1f} | {fast[0] / med[(12, True)][0]:.2f} | {fast[1]:.2f} | "
            f"{slow[0]:.1f} | {slow[0] / med[(12, False)][0]:.1f} | "
            f"{statistics.median(live[n]):.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
