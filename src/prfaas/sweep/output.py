"""Sweep results: one flat table (markdown), JSON, and a heat map of a two-axis planner sweep."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COLUMNS = (
    "phi_kv_gbps",
    "ratio_prfaas_vs_homogeneous",
    "lambda_prfaas",
    "lambda_homogeneous",
    "threshold_tokens",
    "offload_fraction",
    "egress_gbps",
)


def flat_rows(rows: Sequence[dict[str, Any]], axes: Sequence[str]) -> list[dict[str, Any]]:
    """One row per (point, seed[, policy]): axis values, planner numbers, simulator numbers."""
    out: list[dict[str, Any]] = []
    for row in rows:
        base = {k: row[k] for k in (*axes, "seed", *COLUMNS)}
        sim = row.get("sim")
        if not sim:
            out.append(base)
            continue
        for policy, m in sim.items():
            if policy != "rate":
                out.append({**base, "rate": sim["rate"], "policy": policy, **m})
    return out


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return "" if v is None else str(v)


def markdown(flat: Sequence[dict[str, Any]]) -> str:
    if not flat:
        return "(no rows)\n"
    cols = list(flat[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in flat]
    return "\n".join(lines) + "\n"


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n", encoding="utf-8")


def heatmap(rows: Sequence[dict[str, Any]], x: str, y: str, path: Path) -> Path:
    """Lambda_max ratio (PrfaaS-PD / homogeneous) over two axes; y rows sorted by Phi_kv."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    xs = sorted({r[x] for r in rows})
    ys = sorted({r[y] for r in rows}, key=lambda v: _phi(rows, y, v))
    grid = np.full((len(ys), len(xs)), np.nan)
    for r in rows:
        grid[ys.index(r[y]), xs.index(r[x])] = r["ratio_prfaas_vs_homogeneous"]
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * len(xs), 1.0 + 0.32 * len(ys)))
    im = ax.imshow(grid, aspect="auto", cmap="RdYlGn", vmin=0.8, vmax=max(1.6, np.nanmax(grid)))
    ax.set_xticks(range(len(xs)), [f"{v:g}" for v in xs], rotation=45)
    labels = (
        [f"{v} ({_phi(rows, y, v):.0f}G)" for v in ys] if y == "model" else [f"{v:g}" for v in ys]
    )
    ax.set_yticks(range(len(ys)), labels, fontsize=8)
    for i in range(len(ys)):
        for j in range(len(xs)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=6)
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(f"{y} (Phi_kv at 32K, Gbps)" if y == "model" else y)
    ax.set_title("Lambda_max PrfaaS-PD / homogeneous")
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def _phi(rows: Sequence[dict[str, Any]], axis: str, value: Any) -> float:
    return float(next(r["phi_kv_gbps"] for r in rows if r[axis] == value))
