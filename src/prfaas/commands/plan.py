"""`prfaas plan`: the paper's throughput model (§3.4) on a scenario, printed like its Table 6."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DASH = "—"


def add_parser(subparsers: Any, name: str) -> None:
    p = subparsers.add_parser(
        name,
        help="optimal PrfaaS-PD configuration vs homogeneous and naive PD (paper §3.4)",
        description=(
            "Exhaustive grid search over the routing threshold t (step from the scenario, 100 "
            "tokens by default) and the PD-cluster split N_p/N_d; prints a table shaped like the "
            "paper's Table 6, Eq (7)/(8) residuals, the equal-cost comparison and a bandwidth "
            "sweep."
        ),
        epilog="examples: prfaas plan --scenario paper | prfaas plan --scenario "
        "examples/paper-10gbps.toml --json | prfaas plan --scenario paper --plot out/plan",
    )
    p.add_argument(
        "--scenario",
        default="paper",
        help="built-in name (paper, paper-10gbps, kimi-conversation) or a TOML file "
        "(docs/scenario-format.md)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON only")
    p.add_argument("--plot", metavar="DIR", type=Path, help="write Figure-5 and bandwidth PNGs")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from prfaas.planner import load_scenario, optimise

    scenario = load_scenario(args.scenario, traces_dir=getattr(args, "traces_dir", None))
    result = optimise(scenario, with_bandwidth_sweep=not args.json)
    if args.json:
        print(json.dumps(result.to_json_dict(), indent=2))
    else:
        _print(scenario, result)
    if args.plot is not None:
        from prfaas.planner.plots import write_plots

        paths = write_plots(scenario, result, args.plot)
        stream = sys.stderr if args.json else sys.stdout
        for path in paths:
            print(f"wrote {path}", file=stream)
    return 0


def _num(x: float | None, fmt: str = ".2f") -> str:
    return DASH if x is None else format(x, fmt)


def _eq2(scn: Any, s: Any) -> str:
    """Eq (2): egress if the PrfaaS cluster ran flat out, N_prfaas x S_kv(l_long) / T(l_long)."""
    if s.l_long is None or not s.theta_prfaas_compute:
        return DASH
    return f"{s.theta_prfaas_compute * scn.kv_size.bytes(s.l_long) * 8 / 1e9:.2f}"


def _cells(scn: Any, res: Any, c: str) -> list[str]:
    """One column of the Table-6-shaped table for deployment c."""
    r, s, cost = res.deployments[c], res.stages[c], res.cost
    homog = res.deployments["homogeneous"].lambda_max
    per_dollar = cost.lambda_per_dollar_hour
    return [
        _num(r.threshold_tokens, ",d"),
        " / ".join(_num(v, "d") for v in (r.n_prfaas, r.n_p, r.n_d)),
        f"{r.ttft_mean_s:.2f} / {r.ttft_p90_s:.2f}",
        " / ".join(_num(v) for v in (r.theta_prfaas, r.theta_pd_p, r.theta_pd_d)),
        f"{r.lambda_max:.3f}",
        f"{r.lambda_max / homog:.2f}x",
        f"{r.offload_fraction:.1%}",
        f"{_num(r.l_long, ',.0f')} / {_num(r.l_short, ',.0f')}",
        f"{r.egress_gbps:.2f} ({r.egress_gbps / scn.link_gbps:.0%} of link)",
        _eq2(scn, s),
        s.bottleneck,
        f"{cost.cost_per_hour[c]:,.0f}",
        f"{per_dollar[c] / per_dollar['homogeneous']:.2f}x",
    ]


_ROWS = (
    "Threshold t (tokens)",
    "N_prfaas / N_p / N_d",
    "Mean / P90 TTFT (s)",
    "Θ_prfaas / Θ_pd-p / Θ_pd-d (req/s)",
    "Λ_max (req/s)",
    "Ratio vs homogeneous",
    "Offload fraction p",
    "l_long / l_short (tokens)",
    "Egress at Λ_max (Gbps)",
    "Eq (2) N·Φ_kv(l_long) (Gbps)",
    "Binding stage(s)",
    "GPU cost ($/h)",
    "Λ per $ vs homogeneous",
)


def _main_table(scn: Any, res: Any) -> Any:
    from rich.table import Table

    table = Table(title=f"Optimal configurations: {scn.name} (cf. paper Table 6)")
    table.add_column("Metric")
    prfaas = "PrfaaS-PD (= naive)" if res.prfaas_is_naive else "PrfaaS-PD"
    for label in (prfaas, "Homogeneous PD", "Naive Heterogeneous PD"):
        table.add_column(label, justify="right")
    columns = [_cells(scn, res, c) for c in ("prfaas", "homogeneous", "naive")]
    for i, label in enumerate(_ROWS):
        table.add_row(label, *(col[i] for col in columns))
    return table


def _sweep_table(scn: Any, res: Any) -> Any:
    from rich.table import Table

    table = Table(title="Bandwidth sweep (PrfaaS-PD re-optimised at each link rate)")
    for col in ("link Gbps", "Λ_max", "t", "N_p / N_d", "p", "egress Gbps", "binds"):
        table.add_column(col, justify="right")
    for g, s in zip(scn.bandwidth_sweep_gbps, res.bandwidth_sweep, strict=True):
        table.add_row(
            f"{g:g}",
            f"{s.lambda_max:.3f}",
            f"{s.threshold_tokens:,.0f}",
            f"{s.n_p} / {s.n_d}",
            f"{s.offload_fraction:.1%}",
            f"{s.egress_gbps:.2f}",
            s.bottleneck,
        )
    return table


def _print(scn: Any, res: Any) -> None:
    from rich.console import Console

    from prfaas.tables import print_table

    console = Console(width=max(Console().width, 110))
    if scn.description:
        console.print(f"[bold]{scn.name}[/bold]: {scn.description}")
    print_table(console, _main_table(scn, res))
    if res.prfaas_is_naive:
        console.print(
            "PrfaaS-PD degenerates to the naive deployment here: the best threshold t = 0 sends "
            "every request to the PrfaaS cluster and no PD instance prefills (N_p = 0), so the PD "
            "cluster only decodes. Threshold routing gains nothing in this scenario."
        )
    r = res.ratios
    console.print(
        f"Ratios: PrfaaS-PD vs homogeneous {r['prfaas_vs_homogeneous']:.2f}x, vs naive "
        f"{r['prfaas_vs_naive']:.2f}x; naive vs homogeneous {r['naive_vs_homogeneous']:.2f}x. "
        f"At equal cost: PrfaaS-PD {res.cost.prfaas_vs_homogeneous_equal_cost:.2f}x homogeneous "
        f"(prices ${scn.prfaas_price_per_gpu_hour:g} / ${scn.pd_price_per_gpu_hour:g} per "
        f"{scn.prfaas_hardware.name} / {scn.pd_hardware.name} GPU-hour)."
    )
    s = res.stages["prfaas"]
    eq7 = DASH if s.eq7_residual is None else f"{s.eq7_residual:+.2%}"
    console.print(
        f"Optimality at the grid optimum: Eq (7) Θ_prfaas/p = {s.prfaas_bound:.3f} vs "
        f"Θ_pd-p/(1-p) = {s.pd_p_bound:.3f} (residual {eq7}); Eq (8) Θ_prfaas + Θ_pd-p = "
        f"{(s.theta_prfaas or 0) + (s.theta_pd_p or 0):.3f} vs Θ_pd-d = {s.theta_pd_d:.3f} "
        f"(residual {s.eq8_residual:+.1%}; integer instance counts)."
    )
    if res.bandwidth_sweep:
        print_table(console, _sweep_table(scn, res))
    console.print("[dim]Inputs (profiles, not results):[/dim]")
    for label, prof in (
        ("PrfaaS prefill", scn.prfaas_prefill),
        ("PD prefill", scn.pd_prefill),
        ("KV size", scn.kv_size),
        ("decode", scn.decode),
    ):
        console.print(f"[dim]  {label}: {prof.name}: {prof.provenance}[/dim]")
    console.print(
        f"[dim]  lengths: {scn.lengths.name}, mean {scn.lengths.mean:,.0f} tokens; "
        f"output {scn.output_tokens:g} tokens; link {scn.link_gbps:g} Gbps[/dim]"
    )
