"""A live fleet on this machine: N emulated nodes (several per process) and R router replicas over
one embedded etcd, real sockets everywhere; registration time, routing time at a request rate, and
etcd's writes vs keepalives in steady state (issues 11 and 15).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_live_fleet.py \
        [--nodes 64] [--per-process 16] [--routers 2] [--rate 500] [--seconds 20]

`prfaas up`'s supervisor starts etcd (TLS, per-identity permissions), the WAN emulator, the
routers and ceil(N / per-process) worker processes (`[deployment] nodes_per_process`); every node
has its own listeners, certificate, lease and event stream. Registration time: from spawning the
worker processes until every router replica's /health counts every node. Then an open-loop load
generator (its own process, keep-alive HTTP/1.1, Poisson arrivals, requests alternating between
the replicas) sends short non-streaming completions for `--seconds`; each replica's routing time
per request (tokenize, block hashes, index match, view, policy, decision log: the span of
/internal/state's route_ms) is read afterwards. The aggregate p99 is reported as the largest
replica p99 (an upper bound of the p99 over all requests); the same for the decision's CPU time
(thread time), which the OS's preemption on an oversubscribed machine does not inflate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from prfaas.deploy.supervisor import Deployment

LOADGEN = Path(__file__).with_name("fleet_loadgen.py")


def fleet_toml(n: int, per_process: int, routers: int, telemetry_s: float, lease_s: int) -> str:
    remote = max(n // 3, 1)
    decode = max((n - remote) // 4, 1)
    local = n - remote - decode
    return f"""
[deployment]
name = "fleet{n}"
block_tokens = 64
nodes_per_process = {per_process}

[engine]
kind = "emulated"
model = "fleet"
kv_profile = "paper-table5"
num_layers = 4
time_scale = 50.0
payload_scale = 0.0001

[policy]
name = "prfaas"

[policy.params]
threshold_tokens = 600

[router]
replicas = {routers}
heartbeat_s = {telemetry_s}
lease_s = {lease_s}
request_timeout_s = 60.0

[limits]
max_concurrent_per_key = 100000
max_connections = 100000

[[clusters]]
name = "prfaas"
role = "prfaas"

[[clusters.nodes]]
name = "p"
count = {remote}
role = "prefill"
hardware = "H200"
pool_gib = 1

[[clusters]]
name = "pd"
role = "pd"

[[clusters.nodes]]
name = "pp"
count = {local}
role = "prefill"
hardware = "H20"
pool_gib = 1

[[clusters.nodes]]
name = "pdd"
count = {decode}
role = "decode"
hardware = "H20"
pool_gib = 1
max_batch = 64

[[links]]
src = "prfaas"
dst = "pd"
gbps = 100
rtt_ms = 2
emulation = "shaper"
connections = 2
"""


def router_states(dep: Deployment) -> list[dict[str, Any]]:
    out = []
    with dep.operator_client() as client:
        for url in dep.control_urls:
            r = client.get(f"{url}/internal/state", extensions={"sni_hostname": "router"})
            r.raise_for_status()
            out.append(r.json())
    return out


def etcd_counters(dep: Deployment) -> dict[str, float]:
    import re

    names = (
        "etcd_mvcc_put_total",
        "etcd_mvcc_txn_total",
        "etcd_mvcc_delete_total",
        "etcd_debugging_lease_renewed_total",
    )
    with dep.operator_client() as client:
        text = client.get(f"{dep.etcd_url}/metrics").text
    out = {}
    for name in names:
        m = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M)
        out[name] = float(m.group(1)) if m else float("nan")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=64)
    ap.add_argument("--per-process", type=int, default=16)
    ap.add_argument("--routers", type=int, default=2)
    ap.add_argument("--rate", type=float, default=500.0, help="offered requests/s, all replicas")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--telemetry-s", type=float, default=0.5, help="node telemetry period")
    ap.add_argument("--lease-s", type=int, default=3)
    ap.add_argument("--steady-s", type=float, default=20.0, help="idle window for etcd counters")
    ap.add_argument("--json", type=Path, help="also write the result here")
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="prfaas-fleet-"))
    cfg = folder / "fleet.toml"
    cfg.write_text(
        fleet_toml(args.nodes, args.per_process, args.routers, args.telemetry_s, args.lease_s)
    )
    dep = Deployment(cfg)
    spawn: dict[str, float] = {}
    real_start_workers = dep._start_workers

    def timed(*a: Any, **kw: Any) -> None:
        spawn["t0"] = time.monotonic()
        real_start_workers(*a, **kw)

    dep._start_workers = timed  # type: ignore[method-assign]
    t_start = time.monotonic()
    try:
        dep.start(timeout_s=600)
        # _wait_healthy returned: every replica's /health counts every node.
        registered_s = time.monotonic() - spawn["t0"]
        up_s = time.monotonic() - t_start
        print(
            f"up in {up_s:.1f} s; {args.nodes} nodes in "
            f"{len(dep.worker_groups())} processes registered with {args.routers} routers "
            f"{registered_s:.2f} s after the worker processes were spawned",
            flush=True,
        )
        before = etcd_counters(dep)
        time.sleep(args.steady_s)
        after = etcd_counters(dep)
        steady = {k: (after[k] - before[k]) / args.steady_s for k in before}
        print(
            "etcd in steady state, per second: "
            + ", ".join(f"{k} {v:.2f}" for k, v in steady.items()),
            flush=True,
        )
        gen = subprocess.run(
            [
                sys.executable,
                str(LOADGEN),
                "--rate",
                str(args.rate),
                "--seconds",
                str(args.seconds),
                *(u for url in dep.router_urls for u in ("--url", url)),
            ],
            capture_output=True,
            text=True,
            timeout=args.seconds + 180,
        )
        if gen.returncode != 0:
            print(gen.stderr, file=sys.stderr)
            return 1
        load = json.loads(gen.stdout)
        states = router_states(dep)
    finally:
        dep.stop()
    routes = [s["route_ms"] for s in states]
    result = {
        "nodes": args.nodes,
        "processes": -(-args.nodes // args.per_process),
        "routers": args.routers,
        "registered_s": round(registered_s, 3),
        "etcd_per_s": steady,
        "load": load,
        "route_ms_per_router": routes,
        "route_p99_ms_upper": max(r.get("p99", float("nan")) for r in routes),
        "route_cpu_ms_per_router": [s.get("route_cpu_ms", {}) for s in states],
        "route_cpu_p99_ms_upper": max(s.get("route_cpu_ms", {}).get("p99", float("nan"))
                                      for s in states),
        "routed_per_router": [s["routed"] for s in states],
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
