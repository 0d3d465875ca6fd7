"""The live router's routing function with 1,200 emulated nodes at 500 req/s (issue 15).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_router_fleet.py [--nodes 1200] [--rate 500]

One RouterBackend (the real router object: membership, global prefix index, bandwidth monitor,
policy, decision log) built from a deployment of N emulated nodes (1/3 PrfaaS prefill; PD 3 prefill
: 1 decode). The nodes are emulated inside this process, in virtual time: each registers once
(Membership.register, as the router does on a node's etcd record) and sends telemetry every 0.2 s
(Membership.telemetry, as on the node's event stream), and the router's own
dispatch accounting moves as requests are placed and finish (prefill 0.5-4 s, decode 5-30 s), so
node state churns as in a live run at that rate. No worker processes or sockets: what is timed is
the router's per-request routing work (CPU time, steady under other load, and wall time), the
span of benchmarks/bench_live_router.py's route_ms (tokenize, block hashes, context limit,
global-index match, view, policy, decision log).
Both paths run on the same request sequence: indexed (router/fleet_view.py, what the router
uses) and rebuilt (RouterAdapter over a MembershipRecord per node, the previous code).
"""

from __future__ import annotations

import argparse
import heapq
import os
import platform
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from prfaas.bench.stats import latency_summary
from prfaas.cache.hashing import token_block_hashes
from prfaas.cluster.keys import NodeMeta
from prfaas.deploy.config import parse_deployment
from prfaas.router.adapter import RouterAdapter
from prfaas.router.backend import RouterBackend
from prfaas.router.live_view import membership_records
from prfaas.server.backend import CompletionRequest
from prfaas.worker.messages import Telemetry

HEARTBEAT_S = 0.2


@dataclass(frozen=True)
class Reports:
    """How nodes report: every `period_s`; `processes` > 0 delivers each worker process's nodes
    together (one burst per process per period, as nodes sharing a process publish on one
    timer); `steady`: an idle node's report repeats its last (its pool does not change)."""

    period_s: float = HEARTBEAT_S
    processes: int = 0
    steady: bool = False

    def first(self, i: int, n: int) -> float:
        if self.processes:
            return self.period_s * (i % self.processes) / self.processes
        return self.period_s * i / n


def deployment(n: int) -> Any:
    remote = max(n // 3, 1)
    local = n - remote
    return parse_deployment(
        {
            "deployment": {"name": "fleet", "block_tokens": 64},
            "engine": {"kind": "emulated", "kv_profile": "paper-table5"},
            "policy": {"name": "prfaas", "params": {"threshold_tokens": 2048}},
            "clusters": [
                {
                    "name": "prfaas",
                    "role": "prfaas",
                    "nodes": [
                        {"name": "p", "count": remote, "role": "prefill", "hardware": "H200"}
                    ],
                },
                {
                    "name": "pd",
                    "role": "pd",
                    "nodes": [
                        {"name": "pp", "count": local * 3 // 4, "role": "prefill"},
                        {"name": "pd", "count": local - local * 3 // 4, "role": "decode"},
                    ],
                },
            ],
            "links": [{"src": "prfaas", "dst": "pd", "gbps": 100.0, "rtt_ms": 20.0}],
        }
    )


def record(rec: Any) -> NodeMeta:
    batch = 20 if rec.role == "decode" else 1
    return NodeMeta(rec.name, rec.cluster, rec.role, f"{rec.name}:1", "h:2", max_batch=batch,
                    epoch=1.0)


def heartbeat(rec: Any, free: int) -> Telemetry:
    return Telemetry(
        rec.name, 1.0, rec.role, False, 0, 0, 0, 20 if rec.role == "decode" else 1, free, 0, 0, 0,
    )  # fmt: skip


def run(
    n: int, rate: float, requests: int, rebuilt: bool, seed: int = 0,
    reports: Reports = Reports(),
) -> tuple[list[float], list[float]]:
    """(wall, CPU) routing seconds per request, over `requests` arrivals at `rate`."""
    rng = random.Random(seed)
    backend = RouterBackend(deployment(n))
    members = backend.members
    if rebuilt:
        adapter = RouterAdapter(backend.cfg.block_tokens, backend.cfg.router.dead_after_s)
        fleet = backend.fleet

        def rebuilt_view(now: float, tel: Any, im: Any, arrival: bool = False) -> Any:
            if arrival:  # the arrival CV is counted the same way on both paths
                fleet.arrivals.add(now)
            records = membership_records(members)
            return adapter.build_view(now, records, tel, im, fleet.arrivals.cv())

        backend.fleet.view = rebuilt_view  # type: ignore[method-assign]
    names = sorted(members.nodes)
    clock = [0.0]
    time_now = time.monotonic
    # The router reads time.monotonic(); run it on the virtual clock.
    sys.modules["prfaas.router.backend"].time.monotonic = lambda: clock[0]  # type: ignore[attr-defined]
    events: list[tuple[float, int, str, Any]] = []
    seq = 0
    for name in names:
        members.register(record(members.nodes[name]), now=0.0)
    for i, name in enumerate(names):  # telemetry spread over one period
        events.append((reports.first(i, len(names)), i, "beat", name))
    heapq.heapify(events)
    seq = len(names)
    for k in range(requests):
        heapq.heappush(events, (1.0 + k / rate, seq, "request", k))
        seq += 1
    out: list[float] = []
    cpu: list[float] = []
    prompts = [
        " ".join(f"w{rng.randrange(10**6)}" for _ in range(rng.randrange(40, 400)))
        for _ in range(64)
    ]
    try:
        while events:
            t, _, kind, arg = heapq.heappop(events)
            clock[0] = t
            if kind == "beat":
                rec = members.nodes[arg]
                free = 32 << 30 if reports.steady else rng.randrange(8, 64) << 30
                members.telemetry(heartbeat(rec, free), now=t)
                heapq.heappush(events, (t + reports.period_s, seq, "beat", arg))
                seq += 1
            elif kind == "request":
                req = CompletionRequest(f"r{arg}", "emu", prompts[arg % 64], None, 16, arrival_s=t)
                t0, c0 = time.perf_counter(), time.process_time()
                tokens = backend.tokenizer.encode(req.prompt_text)
                backend.context_limit()
                hashes = tuple(token_block_hashes(tokens, backend.block_tokens))
                placement, *_ = backend._place(req, tokens, hashes, True)
                out.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
                p, d = members.nodes[placement.prefill_node], members.nodes[placement.decode_node]
                p.prefill_inflight += 1
                p.prefill_tokens += len(tokens)
                d.decode_active += 1
                d.decode_pending += 1
                heapq.heappush(
                    events, (t + rng.uniform(0.5, 4.0), seq, "prefilled", (p, d, len(tokens)))
                )
                seq += 1
            elif kind == "prefilled":
                p, d, ntok = arg
                p.prefill_inflight -= 1
                p.prefill_tokens -= ntok
                d.decode_pending -= 1
                heapq.heappush(events, (t + rng.uniform(5.0, 30.0), seq, "done", d))
                seq += 1
            else:
                arg.decode_active -= 1
            if kind == "request" and arg == requests - 1:
                break
    finally:
        sys.modules["prfaas.router.backend"].time.monotonic = time_now  # type: ignore[attr-defined]
    return out, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1200)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--report-s", type=float, default=HEARTBEAT_S,
                    help="each node's telemetry period (the live default is 1.0)")
    ap.add_argument("--processes", type=int, default=0,
                    help="deliver each worker process's reports together (0: spread evenly)")
    ap.add_argument("--steady", action="store_true",
                    help="an idle node's report repeats its last, as a live idle node's does")
    args = ap.parse_args()
    reports = Reports(args.report_s, args.processes, args.steady)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; {args.nodes:,} emulated nodes, {args.rate:g} req/s "
        f"(virtual time), {args.requests:,} requests; reports every {reports.period_s:g} s, "
        f"{f'in {reports.processes} bursts' if reports.processes else 'spread evenly'}"
        f"{', idle reports repeat' if reports.steady else ''}\n"
    )
    print("| path | clock | p50 ms | p90 ms | p99 ms | max ms |")
    print("|---|---|---:|---:|---:|---:|")
    for rebuilt in (False, True):
        n = args.requests if not rebuilt else max(args.requests // 5, 200)
        wall, cpu = run(args.nodes, args.rate, n, rebuilt, reports=reports)
        name = "rebuilt per request (before)" if rebuilt else "indexed (router/fleet_view.py)"
        for clock, xs in (("CPU", cpu), ("wall", wall)):
            s = latency_summary(x * 1e3 for x in xs)
            print(
                f"| {name} | {clock} | {s['p50']:.3f} | {s['p90']:.3f} | {s['p99']:.3f} | "
                f"{s['max']:.3f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
