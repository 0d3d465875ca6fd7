"""The cost of TLS on the KV transport (issue 10): same-run ratios, JSON + a markdown summary.

    .venv/bin/python benchmarks/bench_tls.py [--size 256MiB] [--reps 3] [--out out/bench-tls]

Scenarios (`prfaas.transfer.bench.run_bench` with compare_tls: every repetition runs plain and
TLS transfers back to back at each connection count, so a ratio compares runs under one load):
  wan-netns   netns + veth + tbf 1 Gbit/s + 40 ms RTT relay: TLS goodput / plain (goal >= 0.95)
  loopback    CPU-seconds per GiB moved (sender + receiver), TLS and plain
Needs root + iproute2 for wan-netns (else skipped with a note).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from prfaas.commands.transfer_bench import parse_size  # noqa: E402
from prfaas.transfer.bench import run_bench  # noqa: E402
from prfaas.transfer.bench_report import BenchSpec, LinkSpec  # noqa: E402
from prfaas.transfer.netns import netns_missing  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="256MiB")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("out/bench-tls"))
    args = p.parse_args()
    size = parse_size(args.size, "--size")
    specs = {"loopback": BenchSpec(size, (1, 4), args.reps, compare_tls=True)}
    if (why := netns_missing()) is None:
        link = LinkSpec(gbps=1.0, rtt_ms=40.0, netns=True)
        specs["wan-netns"] = BenchSpec(size, (1, 4), args.reps, link=link, compare_tls=True)
    else:
        print(f"wan-netns skipped: {why}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    lines = ["| scenario | conns | plain Gbit/s | TLS Gbit/s | TLS / plain | CPU-s/GiB plain | "
             "CPU-s/GiB TLS |", "|---|---|---|---|---|---|---|"]
    for name, spec in specs.items():
        print(f"== {name}", file=sys.stderr)
        data = run_bench(spec, _progress).to_json()
        (args.out / f"{name}.json").write_text(json.dumps(data, indent=2))
        lines += _rows(name, data)
    summary = "\n".join(lines)
    (args.out / "summary.md").write_text(summary + "\n")
    print(summary)
    return 0


def _progress(msg: str) -> None:
    print(f"  {msg}", file=sys.stderr, flush=True)


def _rows(name: str, data: dict[str, Any]) -> list[str]:
    med = {(r["peer"], r["connections"]): r["gbps"] for r in data["medians"]}
    out = []
    for n, t in sorted((data["tls"] or {}).items()):
        out.append(
            f"| {name} | {n} | {med[('prfaas', int(n))]:.3f} | {med[('prfaas-tls', int(n))]:.3f}"
            f" | {t['goodput_ratio']:.3f} | {t['cpu_s_per_gib_plain']:.2f} | "
            f"{t['cpu_s_per_gib_tls']:.2f} |"
        )
    return out


if __name__ == "__main__":
    sys.exit(main())
