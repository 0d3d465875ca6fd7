"""Soak: steady load for a long time, router and worker RSS sampled every 10 s, plotted.

    .venv/bin/python benchmarks/soak.py --duration 1800 --rate 2.5 \
        --json out/soak.json --plot docs/img/soak-rss.png

A fresh `prfaas up` of --config (default examples/paper-emulated.toml) with every node's
`pool_gib` set to --pool-gib (default 32: the pools, which bound the prefix index and the
workers' pool metadata, fill within the warm-up instead of after hours), the paper's workload
open-loop at --rate req/s for --duration s. Prints per-minute RSS of the router and the largest
worker, the outcome counts, and the verdict: RSS after the warm-up (--warmup s, default 300)
stays within +-10% of its mean (the issue's flatness criterion), per process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

from prfaas.bench.client import normalize_url, run_plan
from prfaas.bench.workload import Shaping, paper_plan
from prfaas.deploy.supervisor import Deployment

ROOT = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def sample(
    dep: Deployment, t0: float, every_s: float, stop: threading.Event, out: list[dict[str, float]]
) -> None:
    while not stop.wait(every_s if out else 0.0):
        row = {"t_s": round(time.monotonic() - t0, 1)}
        for name, proc in dep.procs.items():
            mb = rss_mb(proc.pid)
            if mb is not None:
                row[name] = round(mb, 1)
        out.append(row)


def flatness(samples: list[dict[str, float]], warmup_s: float) -> dict[str, dict[str, float]]:
    """Per process after the warm-up: mean, min, max and the largest deviation from the mean."""
    late = [s for s in samples if s["t_s"] >= warmup_s]
    names = sorted({k for s in late for k in s if k != "t_s"})
    out = {}
    for name in names:
        xs = [s[name] for s in late if name in s]
        if not xs:
            continue
        mean = sum(xs) / len(xs)
        out[name] = {
            "mean_mb": round(mean, 1),
            "min_mb": min(xs),
            "max_mb": max(xs),
            "max_dev": round(max(abs(x - mean) for x in xs) / mean, 4),
        }
    return out


def plot(samples: list[dict[str, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    names = sorted({k for s in samples for k in s if k != "t_s"})
    for name in names:
        pts = [(s["t_s"] / 60, s[name]) for s in samples if name in s]
        style = {"lw": 2.0, "color": "black"} if name == "router" else {"lw": 0.8, "alpha": 0.6}
        ax.plot(*zip(*pts, strict=True), label=name, **style)  # type: ignore[arg-type]
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS (MB)")
    ax.set_title(title)
    ax.legend(fontsize=6, ncol=4)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--config", type=Path, default=ROOT / "examples" / "paper-emulated.toml")
    ap.add_argument("--rate", type=float, default=2.5)
    ap.add_argument("--duration", type=float, default=1800.0)
    ap.add_argument("--warmup", type=float, default=300.0)
    ap.add_argument("--pool-gib", type=float, default=32.0)
    ap.add_argument("--output-tokens", type=int, default=256)
    ap.add_argument("--every", type=float, default=10.0, help="RSS sampling period, s")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--plot", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        text = args.config.read_text().replace("pool_gib = 1024", f"pool_gib = {args.pool_gib:g}")
        config = Path(tmp) / "soak.toml"
        config.write_text(text)
        plan = paper_plan(
            rate_rps=args.rate,
            duration_s=args.duration,
            length_scale=1.0,
            arrival="poisson",
            seed=0,
            shaping=Shaping(output_tokens=args.output_tokens),
        )
        dep = Deployment(config)
        samples: list[dict[str, float]] = []
        stop = threading.Event()
        try:
            url = normalize_url(dep.start())
            t0 = time.monotonic()
            sampler = threading.Thread(target=sample, args=(dep, t0, args.every, stop, samples))
            sampler.start()
            results, wall = asyncio.run(
                run_plan(
                    url, plan, model=dep.cfg.engine.model, endpoint="completions", timeout_s=120.0
                )
            )
        finally:
            stop.set()
            dep.stop()
    ok = sum(1 for r in results if r.ok)
    errors: dict[str, int] = {}
    for r in results:
        if not r.ok:
            errors[r.error or "?"] = errors.get(r.error or "?", 0) + 1
    verdict = flatness(samples, args.warmup)
    for row in samples[:: max(1, int(60 / args.every))]:
        workers = max((v for k, v in row.items() if k not in ("t_s", "router", "wan")), default=0)
        print(
            f"t={row['t_s']:>7.0f} s  router {row.get('router', 0):7.1f} MB  "
            f"largest worker {workers:7.1f} MB",
            flush=True,
        )
    print(f"requests {len(results)}, ok {ok}, errors {errors}, wall {wall:.0f} s")
    worst = max(verdict.items(), key=lambda kv: kv[1]["max_dev"]) if verdict else None
    if worst is not None:
        print(
            f"after {args.warmup:g} s: router {verdict.get('router')}; "
            f"largest deviation {worst[0]} {worst[1]['max_dev']:.1%}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "requests": len(results),
                    "ok": ok,
                    "errors": errors,
                    "flatness": verdict,
                    "samples": samples,
                },
                indent=1,
            )
        )
    if args.plot:
        plot(
            samples,
            args.plot,
            f"soak: {args.rate:g} req/s for {args.duration / 60:.0f} min, {ok}/{len(results)} ok",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
