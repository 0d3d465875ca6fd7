"""Sim vs live: a trace slice through a live emulated deployment and through the simulator of the
same deployment; prints the per-policy agreement table (routing decisions, mean TTFT) and every
disagreement with both sides' reasons and views.

    .venv/bin/python benchmarks/sim_vs_live.py --config examples/paper-emulated.toml \
        --requests 300 --policies prfaas-static,prfaas

With --workload paper --rate R --duration S the plan is the one `prfaas bench --workload paper`
sends (same seed), and --sim-only prints what the simulator of the deployment predicts for it.

Send times are the trace's timestamps / --speedup in emulated seconds (default speedup: the
deployment's time_scale, i.e. the trace at its real rate in modelled time); requests sharing a
timestamp are spread --min-gap-ms apart on both sides (see prfaas.bench.simlive.declump).
--replay also simulates each request at the time the live router routed it (a diagnostic that
takes the load generator's and the HTTP edge's delays out; prfaas.bench.simlive.replayed).
After each live run the simulator runs again with the live pipeline's latency outside the
modelled stages, measured in that run (prfaas.bench.simlive.pipeline_latency_s: dispatch, the KV's
hand-over to the decode, the first token's way back: 6-11 ms emulated on this project's VM),
applied where each request's KV reaches its decode node; --pipeline-ms X,Y also simulates with
each decode starting that much later (a sweep).
--self-jitter-ms X compares the simulator with itself on sends delayed by up to X ms (3 seeds):
the agreement that timing noise of that size leaves even to an exact replica.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from prfaas.bench.agreement import compare, mismatch_lines, table
from prfaas.bench.run import BenchSettings
from prfaas.bench.simlive import (
    declump,
    jittered,
    pipeline_latency_s,
    replayed,
    run_live,
    simulate,
)
from prfaas.bench.workload import Shaping, trace_plan
from prfaas.deploy.config import load_deployment
from prfaas.sim.from_deployment import time_scale
from prfaas.workload.traces import resolve_trace

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--config", type=Path, default=ROOT / "examples" / "paper-emulated.toml")
    ap.add_argument(
        "--trace",
        type=Path,
        default=Path("kimi-conversation"),
        help="a named trace or a trace file (default: the bundled Kimi trace)",
    )
    ap.add_argument("--requests", type=int, default=300, help="first N trace rows")
    ap.add_argument("--speedup", type=float, help="default: the deployment's time_scale")
    ap.add_argument("--policies", default="prfaas-static,prfaas")
    ap.add_argument("--min-gap-ms", type=float, default=20.0, help="spread same-time sends")
    ap.add_argument("--tokens-per-block", type=int, help="default: the deployment's block size")
    ap.add_argument("--max-output-tokens", type=int)
    ap.add_argument("--workload", choices=["paper"], help="the bench's paper workload instead")
    ap.add_argument("--rate", type=float, default=8.0, help="--workload paper: req/s (emulated)")
    ap.add_argument("--duration", type=float, default=40.0, help="--workload paper: send window")
    ap.add_argument("--sim-only", action="store_true", help="skip the live runs")
    ap.add_argument("--json", type=Path, help="also write decisions and the table here")
    ap.add_argument(
        "--replay",
        action="store_true",
        help="also simulate each request at the time the live router routed it (diagnostic)",
    )
    ap.add_argument(
        "--pipeline-ms",
        default="",
        help="also simulate with each request's decode starting this much later (emulated ms, "
        "comma-separated), as if the live pipeline's fixed latency were modelled (diagnostic)",
    )
    ap.add_argument(
        "--self-jitter-ms",
        type=float,
        default=0.0,
        help="also simulate the plan with sends delayed by up to this much (3 seeds) and print "
        "the simulator's agreement with itself: the ceiling live timing noise leaves (diagnostic)",
    )
    args = ap.parse_args()
    args.trace = resolve_trace(args.trace)

    cfg = load_deployment(args.config)
    speedup = args.speedup or time_scale(cfg)
    shaping = Shaping(
        tokens_per_block=args.tokens_per_block or cfg.block_tokens,
        max_output_tokens=args.max_output_tokens,
    )
    if args.workload == "paper":
        plan = BenchSettings(args.duration, workload="paper", rate_rps=args.rate).plan()
    else:
        plan = trace_plan(
            args.trace, speedup=speedup, duration_s=1e12, limit=args.requests, shaping=shaping
        )
        plan = declump(plan, args.min_gap_ms / 1e3)
    print(
        f"{len(plan)} requests over {plan[-1].send_at_s:.1f} emulated s "
        f"(speedup {speedup:g}, time_scale {time_scale(cfg):g}); config {args.config}"
    )
    rows, dump, predicted, replays, selfs, calibrated, measured = [], {}, [], [], [], [], []
    pipeline_ms = [float(x) for x in args.pipeline_ms.split(",") if x.strip()]
    for policy in [p.strip() for p in args.policies.split(",") if p.strip()]:
        t0 = time.perf_counter()
        sim, summary = simulate(cfg, policy, plan)
        predicted.append((policy, summary))
        t1 = time.perf_counter()
        live = {} if args.sim_only else run_live(args.config, policy, plan)
        t2 = time.perf_counter()
        print(f"{policy}: sim {t1 - t0:.1f} s, live {t2 - t1:.1f} s wall", file=sys.stderr)
        if live:
            lat = pipeline_latency_s(live, sim)
            tuned, _ = simulate(cfg, policy, plan, pipeline_s=lat)
            measured.append(compare(f"{policy} (+{1e3 * lat:.1f} ms)", len(plan), tuned, live))
        for ms in pipeline_ms if live else ():
            tuned, _ = simulate(cfg, policy, plan, pipeline_s=ms / 1e3)
            calibrated.append(compare(f"{policy} (+{ms:g} ms)", len(plan), tuned, live))
        if args.replay and live:
            again, _ = simulate(cfg, policy, replayed(plan, live))
            replays.append(compare(policy, len(plan), again, live))
        for seed in (1, 2, 3) if args.self_jitter_ms > 0 else ():
            moved, _ = simulate(cfg, policy, jittered(plan, args.self_jitter_ms / 1e3, seed))
            selfs.append(compare(f"{policy} (seed {seed})", len(plan), sim, moved))
        a = compare(policy, len(plan), sim, live if live else sim)
        rows.append(a)
        for line in mismatch_lines(a):
            print(line)
        dump[policy] = {
            "sim": {i: asdict(d) for i, d in sim.items()},
            "live": {i: asdict(d) for i, d in live.items()},
        }
    print()
    print(
        "simulated (emulated units): "
        + "; ".join(
            f"{p} {m['throughput_rps']:.2f} req/s, TTFT p50/p99 {m['ttft_p50_s']:.2f}/"
            f"{m['ttft_p99_s']:.2f} s, offload {100 * m['offload']:.1f}%"
            for p, m in predicted
        )
    )
    if not args.sim_only:
        print(table(rows))
    if measured:
        print(
            "\nsimulated with the live pipeline's latency outside the modelled stages, measured "
            "in the same run (median of routing -> first token less queue, prefill, KV transfer "
            "and the simulated decode admission wait), applied where the KV reaches its decode:"
        )
        print(table(measured))
    if calibrated:
        print("\nsimulated with each decode starting later by a fixed latency (--pipeline-ms):")
        print(table(calibrated))
    if replays:
        print("\nsimulated at the live router's routing times (--replay):")
        print(table(replays))
    if selfs:
        print(f"\nsimulator vs itself, sends delayed by up to {args.self_jitter_ms:g} ms:")
        print(table(selfs))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"table": table(rows), "runs": dump}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
