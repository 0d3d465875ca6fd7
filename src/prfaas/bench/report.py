"""Human-readable bench output (rich tables) and the progress bar."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from prfaas.bench.client import RequestResult
from prfaas.tables import print_table

LATENCIES = (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("itl_s", "ITL"), ("e2e_s", "E2E"))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.1f}"


def print_report(report: dict[str, Any], console: Console) -> None:
    wl = report["workload"]
    console.print(f"[bold]prfaas bench[/] {report['url']}  model={report['model']}  "
                  f"endpoint={report['endpoint']}  workload={wl.get('kind')}")
    errors = ", ".join(f"{k}: {v}" for k, v in report["errors"].items()) or "none"
    console.print(f"requests: {report['num_requests']} sent, {report['num_ok']} ok, "
                  f"{report['num_errors']} failed ({errors}), {report['num_shed']} shed (429; "
                  f"{report['num_429']} 429 answers in all)"
                  + (f", {report['num_resumed']} cut streams resumed"
                     if report.get("num_resumed") else ""))
    offered = report["offered_rps"]
    console.print(f"duration {report['duration_s']:.2f} s   offered "
                  f"{'-' if offered is None else f'{offered:.2f}'} req/s   throughput "
                  f"{report['throughput_rps']:.2f} req/s   tokens/s in "
                  f"{report['input_tokens_per_s']:,.0f} / out {report['output_tokens_per_s']:,.0f}")
    table = Table(title="latency (ms)", title_justify="left")
    for col in ("metric", "mean", "p50", "p90", "p99", "max", "count"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for key, name in LATENCIES:
        s = report[key]
        if s is None:
            table.add_row(name, *["-"] * 6)
        else:
            table.add_row(name, *(_ms(s[k]) for k in ("mean", "p50", "p90", "p99", "max")),
                          f"{int(s['count'])}")
    print_table(console, table)


def print_comparison(rows: Sequence[tuple[str, dict[str, Any]]], console: Console) -> None:
    """One row per policy: throughput and latency percentiles side by side."""
    table = Table(title="policy comparison (latencies in ms)", title_justify="left")
    for col in ("policy", "ok/sent", "req/s", "out tok/s", "TTFT p50", "TTFT p99", "TPOT p50",
                "TPOT p99", "errors", "429"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for policy, r in rows:
        ttft, tpot = r["ttft_s"] or {}, r["tpot_s"] or {}
        table.add_row(policy, f"{r['num_ok']}/{r['num_requests']}", f"{r['throughput_rps']:.2f}",
                      f"{r['output_tokens_per_s']:,.0f}", _ms(ttft.get("p50")),
                      _ms(ttft.get("p99")), _ms(tpot.get("p50")), _ms(tpot.get("p99")),
                      str(r["num_errors"]), str(r.get("num_shed", 0)))
    print_table(console, table)


class BenchProgress:
    """A rich progress bar of completed requests (silent when stderr is not a terminal)."""

    def __init__(self, total: int, console: Console, enabled: bool = True) -> None:
        self.errors = 0
        self.progress = Progress(
            TextColumn("[bold]bench"), BarColumn(), MofNCompleteColumn(),
            TextColumn("errors {task.fields[errors]}"), TimeElapsedColumn(),
            console=console, disable=not (enabled and console.is_terminal), transient=True)
        self.task = self.progress.add_task("bench", total=total, errors=0)

    def done(self, result: RequestResult) -> None:
        self.errors += 0 if result.ok else 1
        self.progress.update(self.task, advance=1, errors=self.errors)

    def __enter__(self) -> BenchProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
