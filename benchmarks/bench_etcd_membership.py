"""etcd's cost of membership in steady state, and how long a node takes to register (issue 11).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_etcd_membership.py \
        [--config examples/local.toml] [--seconds 30]

Starts the deployment with `prfaas up`'s supervisor (embedded etcd, TLS, RBAC), lets it settle,
then reads etcd's own /metrics (as the operator) before and after `--seconds` of idle steady state:
key writes (`etcd_mvcc_put_total`, transactions, deletes) against lease keepalives
(`etcd_debugging_lease_renewed_total`). Then it times registrations on the same etcd: a lease
grant + record write (`cluster/registry.py`) until a watcher (`cluster/watch.py`) sees the record.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
from pathlib import Path

import httpx

from prfaas.cluster.client import connect
from prfaas.cluster.keys import NodeMeta
from prfaas.cluster.registry import Registration
from prfaas.cluster.watch import NodeWatch
from prfaas.deploy.supervisor import Deployment
from prfaas.security.tls import OPERATOR, Pki

COUNTERS = ("etcd_mvcc_put_total", "etcd_mvcc_txn_total", "etcd_mvcc_delete_total",
            "etcd_debugging_lease_renewed_total", "etcd_server_proposals_committed_total")


def counters(url: str, pki: Pki) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", verify=pki.client, timeout=10).text
    out = {}
    for name in COUNTERS:
        m = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M)
        out[name] = float(m.group(1)) if m else float("nan")
    return out


async def registrations(url: str, pki: Pki, deployment: str, n: int) -> list[float]:
    client = await connect(url, pki)
    watch = NodeWatch(client, deployment)
    await watch.start()
    times = []
    for i in range(n):
        meta = NodeMeta(f"bench-{i}", "bench", "prefill", f"127.0.0.1:{1000 + i}")
        reg = Registration(client, deployment, meta, ttl_s=3)
        t0 = time.perf_counter()
        await reg.start()
        assert await watch.wait_for(lambda nodes, name=meta.name: name in nodes, 5.0)
        times.append(time.perf_counter() - t0)
        await reg.close()
    await watch.close()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="examples/local.toml")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--registrations", type=int, default=50)
    args = ap.parse_args()
    dep = Deployment(Path(args.config))
    t0 = time.monotonic()
    dep.start(timeout_s=300)
    print(f"deployment up in {time.monotonic() - t0:.1f} s ({len(dep.cfg.nodes)} nodes)")
    try:
        assert dep.pki_dir is not None, "run with a PKI (the default): etcd's /metrics needs TLS"
        pki = Pki(dep.pki_dir, OPERATOR)
        time.sleep(3.0)  # settle: registrations and the first policy record are done
        before = counters(dep.etcd_url, pki)
        time.sleep(args.seconds)
        after = counters(dep.etcd_url, pki)
        print(f"steady state, {args.seconds:g} s idle:")
        for name in COUNTERS:
            delta = after[name] - before[name]
            print(f"  {name}: +{delta:g} ({delta / args.seconds:.2f}/s)")
        times = asyncio.run(registrations(dep.etcd_url, pki, dep.cfg.name, args.registrations))
        ms = sorted(1e3 * t for t in times)
        print(f"registration (lease + record, until a watcher sees it), {len(ms)} nodes: "
              f"median {statistics.median(ms):.2f} ms, max {ms[-1]:.2f} ms")
    finally:
        dep.stop()


if __name__ == "__main__":
    main()
