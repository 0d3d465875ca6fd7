"""Router overhead on a live emulated deployment at a fixed open-loop rate (default 200 req/s).

The emulated engine is time-scaled so far (time_scale 1000: a 1K-token H20 prefill takes ~2 ms,
a decode step 25 us) that the workers' service time is negligible; every request still takes the
whole live path: HTTP edge -> router (tokenize, hash, index match, view, policy) -> decode stream
+ prefill RPC -> layer-wise KV transfer -> decode -> tokens back through the router.
Two measures:
- routing time: inside the router, from generate() entry to the placement (tokenize, block
  hashes, global-index match, adapter view, policy) -- the router's own per-request work;
- client TTFT / E2E: everything above plus loopback HTTP, the workers and the client: an upper
  bound on what the live router path adds on top of real service time.

    .venv/bin/python benchmarks/bench_live_router.py --rate 200 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
from pathlib import Path
from typing import Any

from prfaas.bench.client import run_plan
from prfaas.bench.stats import latency_summary
from prfaas.bench.workload import PlannedRequest
from prfaas.deploy.supervisor import Deployment

CONFIG = """
[deployment]
name = "router-overhead"
block_tokens = 64
[engine]
kind = "emulated"
model = "emu"
kv_profile = "paper-table5"
num_layers = 4
payload_scale = 0.00001
time_scale = 1000.0
[policy]
name = "prfaas"
[policy.params]
threshold_tokens = 512
[router]
request_timeout_s = 30.0
[[clusters]]
name = "prfaas"
role = "prfaas"
[[clusters.nodes]]
name = "prfaas-p"
count = 1
role = "prefill"
hardware = "H200"
[[clusters]]
name = "pd"
role = "pd"
[[clusters.nodes]]
name = "pd-p"
count = 1
role = "prefill"
hardware = "H20"
[[clusters.nodes]]
name = "pd-d"
count = 1
role = "decode"
hardware = "H20"
[[links]]
src = "prfaas"
dst = "pd"
gbps = 100
rtt_ms = 0
"""


def plan(rate: float, duration: float, prompt_tokens: int, out_tokens: int) -> list[PlannedRequest]:
    n = int(rate * duration)
    # Alternate short (local) and long (offloaded) prompts; distinct block ids: no prefix hits.
    return [
        PlannedRequest(
            i,
            i / rate,
            (10_000 + i,),
            prompt_tokens * (2 if i % 2 else 1) // 2,
            out_tokens,
            prompt_tokens,
        )
        for i in range(n)
    ]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dep.toml"
        path.write_text(CONFIG)
        dep = Deployment(path)
        url = dep.start(timeout_s=60)
        try:
            warm = plan(20, 1, args.prompt_tokens, args.tokens)
            asyncio.run(run_plan(url, warm, model="emu", endpoint="completions", timeout_s=30))
            load = plan(args.rate, args.duration, args.prompt_tokens, args.tokens)
            results, wall = asyncio.run(
                run_plan(url, load, model="emu", endpoint="completions", timeout_s=30)
            )
            state = dep.control("GET", "/internal/state", timeout=10).json()
        finally:
            dep.stop()
    ok = [r for r in results if r.ok]
    return {
        "requests": len(results),
        "ok": len(ok),
        "wall_s": wall,
        "achieved_rps": len(ok) / wall if wall else 0.0,
        "route_ms_all_requests": state["route_ms"],
        "offload_fraction": state["offload_fraction"],
        "ttft_s": latency_summary(r.ttft_s for r in ok if r.ttft_s is not None),
        "e2e_s": latency_summary(r.e2e_s for r in ok if r.e2e_s is not None),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--prompt-tokens", type=int, default=1024)
    ap.add_argument("--tokens", type=int, default=4, help="output tokens per request")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = measure(args)
    result["machine"] = f"{platform.node()} {platform.machine()} {platform.python_version()}"
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{result['ok']}/{result['requests']} ok, {result['achieved_rps']:.1f} req/s "
        f"(offered {args.rate:g}), offloaded {result['offload_fraction']:.0%}"
    )
    print(f"routing time (router-internal): {result['route_ms_all_requests']} ms")
    for key in ("ttft_s", "e2e_s"):
        s = result[key]
        print(
            f"client {key[:-2]}: p50 {s['p50'] * 1e3:.2f} ms  p90 {s['p90'] * 1e3:.2f} ms  "
            f"p99 {s['p99'] * 1e3:.2f} ms"
        )


if __name__ == "__main__":
    main()
