"""`prfaas kv`: per-token KV bytes, fixed state bytes and S_kv(l) of a model preset."""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from prfaas.errors import UsageError

DEFAULT_LENGTHS = "1K,8K,32K,128K"
_UNITS = {"": 1, "K": 1024, "M": 1024 * 1024}
MIB = 2**20


def add_parser(subparsers: Any, name: str) -> None:
    p = subparsers.add_parser(
        name,
        help="KV-cache and recurrent-state bytes of a model preset",
        description=(
            "Print bytes per token (full-attention KV), SWA window bytes, fixed recurrent/conv "
            "state bytes and S_kv(l) at chosen lengths for a model preset. K = 1024 tokens."
        ),
        epilog="examples: prfaas kv --list | prfaas kv --model qwen3.5-397b-a17b --compare "
        "qwen3-235b-a22b | prfaas kv --model kimi-linear-48b --lengths 4K,100000 --json",
    )
    p.add_argument("--model", help="preset name (see --list)")
    p.add_argument("--list", action="store_true", help="list the model presets")
    p.add_argument("--lengths", default=DEFAULT_LENGTHS, help="comma list, e.g. 1K,8K,32K,128K")
    p.add_argument(
        "--compare",
        metavar="NAME",
        help="baseline preset for the reduction ratio (default: the preset's dense_baseline)",
    )
    p.add_argument(
        "--state-bytes",
        type=int,
        choices=(2, 4),
        default=None,
        help="bytes per recurrent-state element (default: preset's, fp32 = 4)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def parse_lengths(text: str) -> list[int]:
    """'1K,8K,100000' -> [1024, 8192, 100000]; K = 1024, M = 1024^2."""
    out: list[int] = []
    for item in text.split(","):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", item)
        if not m:
            raise UsageError(f"--lengths: cannot read {item.strip()!r} (use e.g. 1K,8K,32000)")
        value = float(m.group(1)) * _UNITS[m.group(2).upper()]
        if value != int(value) or value <= 0:
            raise UsageError(f"--lengths: {item.strip()!r} is not a whole number of tokens > 0")
        out.append(int(value))
    return out


def _report(slug: str, lengths: list[int], state_bytes: int | None) -> dict[str, Any]:
    from prfaas.model.presets import get_model

    preset = get_model(slug)
    spec = preset.spec if state_bytes is None else preset.spec.with_dtypes(state=state_bytes)
    return {
        "model": preset.slug,
        "name": preset.name,
        "layers": spec.describe_layers(),
        "bytes_per_token": spec.bytes_per_token,
        "swa_bytes_per_token": spec.swa_bytes_per_token,
        "swa_window_tokens": spec.swa_window_tokens,
        "fixed_bytes": spec.fixed_bytes,
        "state_dtype_bytes": spec.state_dtype_bytes,
        "lengths": [{"tokens": n, "kv_bytes": spec.kv_bytes(n)} for n in lengths],
    }


def run(args: argparse.Namespace) -> int:
    if args.list:
        return _list(args.json)
    if not args.model:
        raise UsageError("kv: give --model NAME (or --list to see the presets)")
    lengths = parse_lengths(args.lengths)
    report = _report(args.model, lengths, args.state_bytes)
    compare = args.compare or _dense_baseline(args.model)
    if compare:
        base = _report(compare, lengths, args.state_bytes)
        report["compare"] = {
            "model": base["model"],
            "bytes_per_token": base["bytes_per_token"],
            "fixed_bytes": base["fixed_bytes"],
            "lengths": [
                {**b, "reduction": b["kv_bytes"] / m["kv_bytes"]}
                for b, m in zip(base["lengths"], report["lengths"], strict=True)
            ],
        }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_report(report)
    return 0


def _dense_baseline(slug: str) -> str | None:
    from prfaas.model.presets import get_model

    return get_model(slug).dense_baseline


def _list(as_json: bool) -> int:
    from prfaas.model.presets import list_models

    rows = [_report(slug, [], None) for slug in list_models()]
    if as_json:
        print(json.dumps([{k: r[k] for k in r if k != "lengths"} for r in rows], indent=2))
        return 0
    from rich.table import Table

    table = Table(title="Model presets (bf16 KV; recurrent state fp32, conv bf16)")
    for col in ("model", "layers", "KV B/token", "SWA B/token", "fixed state B"):
        table.add_column(col, justify="left" if col in ("model", "layers") else "right")
    for r in rows:
        swa = "-"
        if r["swa_window_tokens"]:
            swa = f"{r['swa_bytes_per_token']:,} x <= {r['swa_window_tokens']}"
        table.add_row(
            r["model"], r["layers"], f"{r['bytes_per_token']:,}", swa, f"{r['fixed_bytes']:,}"
        )
    _console().print(table)
    return 0


def _console() -> Any:
    """A rich console at least 120 columns wide, so piped output keeps one row per model."""
    from rich.console import Console

    return Console(width=max(Console().width, 120))


def _print_report(report: dict[str, Any]) -> None:
    from rich.table import Table

    console = _console()
    console.print(f"[bold]{report['name']}[/bold] ({report['model']}): {report['layers']}")
    line = (
        f"KV bytes/token {report['bytes_per_token']:,}; fixed state bytes {report['fixed_bytes']:,}"
        f" (state dtype {report['state_dtype_bytes']} B)"
    )
    if report["swa_window_tokens"]:
        line += (
            f"; SWA bytes/token {report['swa_bytes_per_token']:,} "
            f"capped at {report['swa_window_tokens']} tokens"
        )
    console.print(line)
    table = Table()
    table.add_column("tokens", justify="right")
    table.add_column("S_kv bytes", justify="right")
    table.add_column("S_kv MiB", justify="right")
    compare = report.get("compare")
    if compare:
        table.add_column(f"{compare['model']} MiB", justify="right")
        table.add_column("reduction", justify="right")
    for i, row in enumerate(report["lengths"]):
        cells = [f"{row['tokens']:,}", f"{row['kv_bytes']:,}", f"{row['kv_bytes'] / MIB:,.1f}"]
        if compare:
            base = compare["lengths"][i]
            cells += [f"{base['kv_bytes'] / MIB:,.1f}", f"{base['reduction']:.2f}x"]
        table.add_row(*cells)
    console.print(table)
