"""Acceptance measurements of the KV transfer engine (issue 5); writes JSON + a markdown summary.

    .venv/bin/python benchmarks/bench_transfer.py [--quick] [--only loopback,wan,...]

Scenarios (each one `prfaas.transfer.bench.run_bench` run, peers interleaved per repetition):
  loopback        1 GiB, 1/2/4/8 connections vs iperf3 -l 1M, Mooncake TCP (P2PHANDSHAKE) and
                  a bare blocking-socket Python loop on the same buffers (python-raw)
  loopback-reuse  same, iperf3-like cache-resident buffers (isolates protocol cost)
  wan-netns       netns + veth + tbf 1 Gbit/s + 40 ms RTT delay relay, 1 vs 4 connections
                  (asks for 0.1% netem loss: records whether the kernel has netem)
  wan-relay       the same link from the in-process shaping relay only
  pipe-netns      32 layers, one every 100 ms, over the netns link: tail after the last layer
Needs root + iproute2 for the netns scenarios, iperf3 and mooncake for the peers (else skipped).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from prfaas.transfer.bench import run_bench  # noqa: E402
from prfaas.transfer.bench_report import BenchReport, BenchSpec, LinkSpec  # noqa: E402
from prfaas.transfer.netns import netns_missing  # noqa: E402

GIB, MIB = 1 << 30, 1 << 20
WAN = LinkSpec(gbps=1.0, rtt_ms=40.0, loss_pct=0.1, netns=True)


def scenarios(quick: bool) -> dict[str, BenchSpec]:
    reps = 3 if quick else 5
    size = 256 * MIB if quick else GIB
    wan_size = 128 * MIB if quick else 512 * MIB
    return {
        "loopback": BenchSpec(
            size, (1, 2, 4, 8), reps, compare_iperf3=True, compare_mooncake=True,
            compare_raw=True,
        ),
        "loopback-reuse": BenchSpec(
            size, (1, 2, 4), reps, layers=size // (4 * MIB), reuse_buffers=True,
            compare_iperf3=True,
        ),
        "wan-netns": BenchSpec(wan_size, (1, 4), 3, link=WAN, compare_iperf3=True),
        "wan-relay": BenchSpec(
            wan_size, (1, 4), 2, link=LinkSpec(1.0, 40.0), compare_iperf3=True
        ),
        "pipe-netns": BenchSpec(
            256 * MIB, (1, 4), 3, chunk_bytes=MIB, layers=32, layer_interval_s=0.1,
            link=LinkSpec(1.0, 40.0, netns=True),
        ),
    }  # fmt: skip


def verdicts(name: str, report: BenchReport) -> dict[str, Any]:
    """The acceptance numbers of one scenario (ratios per repetition, then their median)."""
    spec = report.spec
    res: dict[str, Any] = {"medians": report.medians()}
    for peer in ("iperf3", "mooncake", "python-raw"):
        best = report.best_ratio("prfaas", peer)
        if best:
            res[f"prfaas/{peer}"] = best
    if spec.link is not None:
        link_bps = spec.link.gbps * 1e9
        for row in res["medians"]:
            if row["peer"] == "prfaas":
                res[f"x{row['connections']}/link"] = row["gbps"] * 1e9 / link_bps
        if spec.layer_interval_s:
            layer_bytes = spec.size_bytes / spec.layers
            bound = 1.5 * layer_bytes * 8 / link_bps + spec.link.rtt_ms / 1000
            res["pipelining_bound_s"] = bound
            res["tails_s"] = {
                row["connections"]: row["tail_s"]
                for row in res["medians"]
                if row["peer"] == "prfaas"
            }
    return res


def summary_md(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| scenario | peer | conns | Gbit/s median | runs | tail (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        for row in r["verdicts"]["medians"]:
            tail = f"{row['tail_s'] * 1000:.1f}" if row["tail_s"] is not None else ""
            runs = ", ".join(f"{g:.2f}" for g in row["gbps_all"])
            cells = [name, row["peer"], str(row["connections"]), f"{row['gbps']:.2f}", runs, tail]
            lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for name, r in results.items():
        v = {k: val for k, val in r["verdicts"].items() if k != "medians"}
        lines.append(f"- **{name}**: `{json.dumps(v, default=lambda x: round(x, 3))}`")
        lines += [f"  - note: {n}" for n in r["notes"]]
        m = r["machine"]
        lines.append(f"  - load average {m['loadavg_start'][0]:.2f} -> {m['loadavg_end'][0]:.2f}")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller sizes, fewer repetitions")
    p.add_argument("--only", help="comma list of scenario names")
    p.add_argument("--out-dir", type=Path, default=REPO / "out" / "bench-transfer")
    args = p.parse_args()
    todo = scenarios(args.quick)
    if args.only:
        todo = {k: v for k, v in todo.items() if k in args.only.split(",")}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    for name, spec in todo.items():
        if spec.link is not None and spec.link.netns and (why := netns_missing()):
            print(f"{name}: skipped ({why})", flush=True)
            continue
        t0 = time.monotonic()
        print(f"{name}: running ...", flush=True)
        report = run_bench(spec, lambda msg: print(f"  {msg}", flush=True))
        data = report.to_json()
        data["verdicts"] = verdicts(name, report)
        results[name] = data
        (args.out_dir / f"{name}.json").write_text(json.dumps(data, indent=2))
        v = {k: val for k, val in data["verdicts"].items() if k != "medians"}
        print(
            f"{name}: {time.monotonic() - t0:.0f} s  {json.dumps(v, default=lambda x: round(x, 3))}"
        )
    md = summary_md(results)
    (args.out_dir / "summary.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
