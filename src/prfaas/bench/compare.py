"""--compare: the same bench run against a fresh deployment per policy, one table, an optional plot.

The deployment is injected: `start_deployment(config_path, policy) -> (url, stop)` starts everything
for that policy, returns once it is healthy, and `stop()` tears it down (the lead wires `prfaas up`
in; tests pass a starter that serves FakeBackend).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from prfaas.bench.report import print_comparison
from prfaas.bench.run import BenchSettings, run_bench
from prfaas.errors import UsageError

StartDeployment = Callable[[Path, str], tuple[str, Callable[[], None]]]


def parse_policies(text: str) -> list[str]:
    policies = [p.strip() for p in text.split(",") if p.strip()]
    if not policies:
        raise UsageError("--compare needs a comma-separated list of policies")
    if len(set(policies)) != len(policies):
        raise UsageError(f"--compare lists a policy twice: {text}")
    return policies


def run_compare(policies: Sequence[str], config_path: Path, start_deployment: StartDeployment,
                settings: BenchSettings, *, console: Console | None = None,
                plot_path: Path | None = None, progress: bool = True,
                ) -> list[tuple[str, dict[str, Any]]]:
    """Bench each policy on its own deployment (always stopped, even on error); print one table."""
    console = console or Console(stderr=True)
    rows: list[tuple[str, dict[str, Any]]] = []
    for policy in policies:
        console.print(f"[bold]{policy}[/]: starting deployment from {config_path}")
        url, stop = start_deployment(config_path, policy)
        try:
            report = run_bench(url, settings, console=console, progress=progress)
        finally:
            stop()
        report["policy"] = policy
        rows.append((policy, report))
    print_comparison(rows, console)
    if plot_path is not None:
        plot_comparison(rows, plot_path)
        console.print(f"plot written to {plot_path}")
    return rows


def plot_comparison(rows: Sequence[tuple[str, dict[str, Any]]], path: Path) -> None:
    """Throughput and TTFT/TPOT percentiles per policy, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [p for p, _ in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), constrained_layout=True)
    axes[0].bar(names, [r["throughput_rps"] for _, r in rows], color="#2563eb")
    axes[0].set_title("throughput (req/s)")
    for ax, key, title in ((axes[1], "ttft_s", "TTFT (s)"), (axes[2], "tpot_s", "TPOT (ms)")):
        scale = 1000.0 if key == "tpot_s" else 1.0
        for offset, q, color in ((-0.2, "p50", "#059669"), (0.2, "p99", "#d97706")):
            vals = [((r[key] or {}).get(q) or 0.0) * scale for _, r in rows]
            ax.bar([i + offset for i in range(len(rows))], vals, width=0.4, label=q, color=color)
        ax.set_xticks(range(len(rows)), names)
        ax.set_title(title)
        ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
