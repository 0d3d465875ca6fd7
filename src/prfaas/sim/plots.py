"""--plot DIR: TTFT CDF per policy, PrfaaS egress over time, prefill queue depth over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prfaas.core.lifecycle import Phase
from prfaas.sim.state import SimResult


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(results: dict[str, SimResult], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    plt = _pyplot()
    paths = [
        _ttft_cdf(plt, results, out_dir / "ttft_cdf.png"),
        _egress(plt, results, out_dir / "egress_timeline.png"),
        _queues(plt, results, out_dir / "queue_timeline.png"),
    ]
    return paths


def _ttft_cdf(plt: Any, results: dict[str, SimResult], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, res in results.items():
        ttft = sorted(r.ttft_s for r in res.records if r.phase == Phase.FINISHED)
        if ttft:
            ys = [(i + 1) / len(ttft) for i in range(len(ttft))]
            ax.plot(ttft, ys, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("TTFT (s, log scale)")
    ax.set_ylabel("fraction of requests")
    ax.set_title("TTFT CDF per policy")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(plt, fig, path)


def _egress(plt: Any, results: dict[str, SimResult], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    cap_drawn = False
    for name, res in results.items():
        s = res.series
        gbps = s.egress_gbps()
        if not gbps:
            continue
        ax.plot(s.times_s[: len(gbps)], gbps, label=f"{name} egress", lw=0.8)
        if not cap_drawn:
            caps = [
                sum(c) for c in zip(*(s.link_capacity_gbps[n] for n in s.egress_links), strict=True)
            ]
            ax.plot(s.times_s[: len(caps)], caps, "k--", lw=1, label="link capacity")
            cap_drawn = True
    ax.set_xlabel("time (s)")
    ax.set_ylabel("PrfaaS egress (Gbps, per sample interval)")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_title("Cross-cluster egress over time")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(plt, fig, path)


def _queues(plt: Any, results: dict[str, SimResult], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, res in results.items():
        s = res.series
        for cluster, depth in s.queue_depth.items():
            ax.plot(s.times_s[: len(depth)], depth, lw=0.8, label=f"{name} / {cluster}")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("requests waiting for prefill")
    ax.set_title("Prefill queue depth per cluster")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
