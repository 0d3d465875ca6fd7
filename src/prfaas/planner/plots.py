"""PNG plots of the planner: Figure 5(a)/(b) of the paper and a bandwidth sweep (matplotlib Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from prfaas.planner.result import PlanResult
from prfaas.planner.scenario import Scenario
from prfaas.planner.search import (
    bandwidth_sweep,
    optimise_homogeneous,
    optimise_naive,
    split_sweep,
    threshold_sweep,
)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_split_sweep(scn: Scenario, result: PlanResult, path: Path) -> Path:
    """Fig 5(a): t fixed at its optimum; prefill and decode bounds against N_p (N_d on top)."""
    plt = _pyplot()
    best = result.stages["prfaas"]
    grid = split_sweep(scn, best.threshold_tokens)
    n_p = grid.n_p[:, 0]
    prefill = np.minimum(grid.prfaas_bound, grid.pd_p_bound)[:, 0]
    decode = np.broadcast_to(grid.theta_pd_d, grid.lambda_max.shape)[:, 0]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(n_p, prefill, "o-", color="tab:red", label="Prefill bound")
    ax.plot(n_p, decode, "s-", color="tab:green", label="Decode bound")
    ax.plot([best.n_p], [best.lambda_max], "*", color="gold", ms=18, mec="k", zorder=5)
    ax.annotate(
        f"Λmax = {best.lambda_max:.2f}",
        (best.n_p, best.lambda_max),
        textcoords="offset points",
        xytext=(8, -16),
    )
    ax.set_xlabel("N_p (PD-cluster prefill instances)")
    ax.set_ylabel("throughput bound (req/s)")
    ax.set_ylim(0, max(float(np.max(decode)), best.lambda_max) * 1.2)
    top = ax.secondary_xaxis(
        "top", functions=(lambda x: scn.pd_instances - x, lambda x: scn.pd_instances - x)
    )
    top.set_xlabel("N_d (decode instances)")
    ax.set_title(f"{scn.name}: P/D split at t = {best.threshold_tokens:,.0f} tokens", pad=28)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    return _save(fig, path)


def plot_threshold_sweep(scn: Scenario, result: PlanResult, path: Path) -> Path:
    """Fig 5(b): N_p / N_d fixed at the optimum; Θ_prfaas/p and Θ_pd-p/(1-p) against t."""
    plt = _pyplot()
    best = result.stages["prfaas"]
    grid = threshold_sweep(scn, best.n_p, best.n_d)
    t = grid.stats.t / 1000.0
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(t, grid.prfaas_bound[0], color="tab:red", label="PrfaaS bound Θ_prfaas / p")
    ax.plot(t, grid.pd_p_bound[0], color="tab:blue", label="PD-Prefill bound Θ_pd-p / (1-p)")
    ax.axhline(
        float(np.ravel(grid.theta_pd_d)[0]), color="tab:green", ls="--", label="Decode bound Θ_pd-d"
    )
    ax.plot(
        [best.threshold_tokens / 1000.0],
        [best.lambda_max],
        "*",
        color="gold",
        ms=18,
        mec="k",
        zorder=5,
    )
    ax.annotate(
        f"t = {best.threshold_tokens / 1000:.1f}K, Λmax = {best.lambda_max:.2f}",
        (best.threshold_tokens / 1000.0, best.lambda_max),
        textcoords="offset points",
        xytext=(8, 8),
    )
    ax.set_xlim(0, float(scn.lengths.quantile(0.95)) / 1000.0)
    ax.set_ylim(0, best.lambda_max * 2.0)
    ax.set_xlabel("threshold t (K tokens)")
    ax.set_ylabel("throughput bound (req/s)")
    ax.set_title(f"{scn.name}: threshold sweep at N_p = {best.n_p}, N_d = {best.n_d}")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)


def plot_bandwidth_sweep(scn: Scenario, path: Path, points: int = 40) -> Path:
    """Λ_max of the three deployments and the optimal t against the cross-cluster link rate."""
    plt = _pyplot()
    lo = min(min(scn.bandwidth_sweep_gbps), scn.link_gbps) / 2
    hi = max(max(scn.bandwidth_sweep_gbps), scn.link_gbps) * 2
    gbps = np.geomspace(lo, hi, points)
    sweep = bandwidth_sweep(scn, tuple(float(g) for g in gbps))
    naive = [optimise_naive(scn.with_link(float(g))).lambda_max for g in gbps]
    homog = optimise_homogeneous(scn).lambda_max
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(6.4, 6.0), sharex=True)
    ax.plot(gbps, [s.lambda_max for s in sweep], "o-", ms=3, color="tab:red", label="PrfaaS-PD")
    ax.plot(gbps, naive, "s-", ms=3, color="tab:purple", label="naive heterogeneous")
    ax.axhline(homog, color="tab:gray", ls="--", label="homogeneous PD")
    ax.axvline(scn.link_gbps, color="k", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_ylabel("Λmax (req/s)")
    ax.set_title(f"{scn.name}: throughput vs cross-cluster bandwidth")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax2.plot(
        gbps,
        [s.threshold_tokens / 1000.0 for s in sweep],
        "o-",
        ms=3,
        color="tab:blue",
        label="optimal t (K tokens)",
    )
    ax2.plot(
        gbps,
        [s.egress_gbps for s in sweep],
        "^-",
        ms=3,
        color="tab:orange",
        label="egress at Λmax (Gbps)",
    )
    ax2.axvline(scn.link_gbps, color="k", lw=0.8, ls=":")
    ax2.set_xlabel("link (Gbps)")
    ax2.grid(alpha=0.3, which="both")
    ax2.legend(fontsize=8)
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path


def write_plots(scn: Scenario, result: PlanResult, out_dir: Path) -> list[Path]:
    """The two Figure-5 curves and the bandwidth sweep as PNG files in out_dir."""
    return [
        plot_split_sweep(scn, result, out_dir / "fig5a_split_sweep.png"),
        plot_threshold_sweep(scn, result, out_dir / "fig5b_threshold_sweep.png"),
        plot_bandwidth_sweep(scn, out_dir / "bandwidth_sweep.png"),
    ]
