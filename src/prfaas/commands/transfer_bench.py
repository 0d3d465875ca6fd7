"""`prfaas transfer-bench`: KV transfer throughput on loopback or an emulated WAN link, vs peers."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from prfaas.errors import UsageError

_UNITS = {
    "": 1, "B": 1, "K": 1 << 10, "KB": 10**3, "KIB": 1 << 10, "M": 1 << 20, "MB": 10**6,
    "MIB": 1 << 20, "G": 1 << 30, "GB": 10**9, "GIB": 1 << 30,
}  # fmt: skip


def add_parser(subparsers: Any, name: str) -> None:
    p = subparsers.add_parser(
        name,
        help="measure the KV transfer engine (loopback or emulated WAN) against iperf3/Mooncake",
        description=(
            "Sends --size bytes with prfaas's layer-wise multi-connection TCP transport at each "
            "connection count, interleaved with the comparison peers, and reports medians. "
            "Without --link-gbps it runs on loopback; with it, across a shaping relay (token "
            "bucket + one-way delay) or, with --netns, two network namespaces joined by a veth "
            "pair shaped by tc tbf with a delay relay (needs root and iproute2)."
        ),
        epilog="examples: prfaas transfer-bench --size 1GiB --connections 1,2,4,8 "
        "--compare-iperf3 --compare-mooncake | prfaas transfer-bench --size 256MiB "
        "--link-gbps 1 --rtt-ms 40 --netns --connections 1,4 | prfaas transfer-bench "
        "--size 256MiB --link-gbps 1 --rtt-ms 40 --layers 32 --layer-interval-ms 100",
    )
    p.add_argument("--size", default="1GiB", help="bytes per transfer, e.g. 256MiB, 1GiB")
    p.add_argument("--connections", default="1,2,4,8", help="comma list of connection counts")
    p.add_argument("--reps", type=int, default=3, help="repetitions (medians are reported)")
    p.add_argument("--chunk", default="4MiB", help="chunk size (unit of checksum and resend)")
    p.add_argument("--layers", type=int, default=16, help="layers the payload is split into")
    p.add_argument(
        "--layer-interval-ms",
        type=float,
        default=0.0,
        help="emit one layer every T ms (a producer's pace; 0 = all at once)",
    )
    p.add_argument("--link-gbps", type=float, help="emulate a link of this rate")
    p.add_argument("--rtt-ms", type=float, default=0.0, help="round-trip time of the link")
    p.add_argument("--loss", type=float, metavar="PCT", help="packet loss %% (needs netem)")
    p.add_argument("--netns", action="store_true", help="real namespaces + tc tbf + relay")
    p.add_argument(
        "--reuse-buffers",
        action="store_true",
        help="iperf3-like: resend one chunk-sized buffer into one receive buffer (cache-resident)",
    )
    p.add_argument("--compare-iperf3", action="store_true", help="also run iperf3 -l 1M")
    p.add_argument("--compare-mooncake", action="store_true", help="also run Mooncake TCP")
    p.add_argument(
        "--compare-raw",
        action="store_true",
        help="also run a bare Python socket loop on the same buffers (the memory-bound ceiling)",
    )
    p.add_argument(
        "--tls",
        action="store_true",
        help="also run every transfer over TLS (stdlib ssl, throwaway CA), interleaved with the "
        "plain one: goodput ratio and CPU-seconds per GiB of each",
    )
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument("--out", type=Path, help="also write the JSON report to this file")
    p.set_defaults(run=run)


def parse_size(text: str, flag: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    unit = m.group(2).upper() if m else ""
    if not m or unit not in _UNITS:
        raise UsageError(f"{flag}: cannot read {text!r} (use e.g. 4MiB, 1GiB, 1000000)")
    value = int(float(m.group(1)) * _UNITS[unit])
    if value <= 0:
        raise UsageError(f"{flag}: {text!r} must be > 0")
    return value


def parse_connections(text: str) -> tuple[int, ...]:
    try:
        conns = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise UsageError(f"--connections: cannot read {text!r} (use e.g. 1,2,4,8)") from None
    if not conns or min(conns) < 1 or max(conns) > 64:
        raise UsageError("--connections: each count must be in 1..64")
    return conns


def build_spec(args: argparse.Namespace) -> Any:
    from prfaas.transfer import frames
    from prfaas.transfer.bench_report import BenchSpec, LinkSpec
    from prfaas.transfer.netns import netns_missing

    chunk = parse_size(args.chunk, "--chunk")
    if not frames.MIN_CHUNK_BYTES <= chunk <= frames.MAX_CHUNK_BYTES:
        raise UsageError(f"--chunk: must be between 4KiB and 64MiB, got {args.chunk}")
    if args.reps < 1 or args.layers < 1 or args.layer_interval_ms < 0:
        raise UsageError("--reps and --layers must be >= 1, --layer-interval-ms >= 0")
    link = None
    if args.link_gbps is not None:
        if args.link_gbps <= 0 or args.rtt_ms < 0:
            raise UsageError("--link-gbps must be > 0 and --rtt-ms >= 0")
        if args.netns and (reason := netns_missing()):
            raise UsageError(f"--netns: {reason}")
        link = LinkSpec(args.link_gbps, args.rtt_ms, args.loss, args.netns)
    elif args.netns or args.loss is not None or args.rtt_ms:
        raise UsageError("--netns, --loss and --rtt-ms need --link-gbps")
    size = parse_size(args.size, "--size")
    layers = -(-size // chunk) if args.reuse_buffers else args.layers  # one chunk per layer
    return BenchSpec(
        size_bytes=size,
        connections=parse_connections(args.connections),
        reps=args.reps,
        chunk_bytes=chunk,
        layers=layers,
        reuse_buffers=args.reuse_buffers,
        layer_interval_s=args.layer_interval_ms / 1000.0,
        link=link,
        compare_iperf3=args.compare_iperf3,
        compare_mooncake=args.compare_mooncake,
        compare_raw=args.compare_raw,
        compare_tls=args.tls,
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from prfaas.transfer.bench import run_bench

    spec = build_spec(args)
    peers = spec.compare_iperf3 + spec.compare_mooncake + spec.compare_raw
    steps = spec.reps * (len(spec.connections) * (1 + spec.compare_tls) + peers)
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("transfer-bench", total=steps)

        def tick(msg: str) -> None:
            bar.update(task, advance=1, description=msg)

        report = run_bench(spec, tick)
    data = report.to_json()
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(data, indent=2))
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print_report(data, Console(width=max(Console().width, 132)))
    return 0


def print_report(data: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    from prfaas.tables import print_table

    spec, link = data["spec"], data["spec"]["link"]
    iperf = [r["gbps"] for r in data["medians"] if r["peer"] == "iperf3"]
    ref_name, ref = ("link", link["gbps"]) if link else ("iperf3", iperf[0] if iperf else None)
    title = f"{spec['size_bytes'] / 2**20:.0f} MiB, {spec['layers']} layers, " + (
        f"{link['gbps']} Gbit/s link, {link['rtt_ms']} ms RTT"
        + (" (netns + tbf + delay relay)" if link["netns"] else " (shaping relay)")
        if link
        else "loopback"
    )
    table = Table(title=title)
    for col in ("peer", "conns", "Gbit/s (median)", f"ratio to {ref_name}", "TCP retrans",
                "tail after last layer", "verified", "range (Gbit/s)"):  # fmt: skip
        table.add_column(col, justify="left" if col == "peer" else "right")
    for r in data["medians"]:
        tail = f"{r['tail_s'] * 1000:.1f} ms" if r["tail_s"] is not None else "—"
        ratio = f"{r['gbps'] / ref:.2f}" if ref else "—"
        runs = f"{min(r['gbps_all']):.2f}–{max(r['gbps_all']):.2f}"
        ok = {True: "yes", False: "NO", None: "—"}[r["verified"]]
        if r["verified"] is None and r["peer"].startswith("prfaas"):
            ok = "per chunk"
        cells = [r["peer"], str(r["connections"]), f"{r['gbps']:.2f}", ratio]
        table.add_row(*cells, str(r["retransmits"]), tail, ok, runs)
    print_table(console, table)
    for name, r in data["ratios"].items():
        if r:
            by = ", ".join(f"x{c}: {v:.2f}" for c, v in r["by_connections"].items())
            console.print(
                f"{name} (median of same-repetition ratios): best x{r['connections']} = "
                f"{r['median']:.2f}  [{by}]",
                markup=False,
            )
    for n, t in (data.get("tls") or {}).items():
        console.print(
            f"TLS x{n}: goodput {t['goodput_ratio']:.3f} of plain (median of same-repetition "
            f"ratios); CPU-s per GiB (sender + receiver) TLS {t['cpu_s_per_gib_tls']:.2f} vs "
            f"plain {t['cpu_s_per_gib_plain']:.2f}",
            markup=False,
        )
    if link and spec["layer_interval_s"] > 0:
        _print_pipelining(data, console)
    for note in data["notes"]:
        console.print(f"note: {note}")
    m = data["machine"]
    console.print(
        f"machine: {m['cpus']} CPUs ({m['cpu_model']}), kernel {m['kernel']}, checksum "
        f"{m['checksum']}, load avg {m['loadavg_start'][0]:.2f} -> {m['loadavg_end'][0]:.2f}"
    )


def _print_pipelining(data: dict[str, Any], console: Any) -> None:
    spec, link = data["spec"], data["spec"]["link"]
    layer_bytes = spec["size_bytes"] / spec["layers"]
    bound = 1.5 * layer_bytes * 8 / (link["gbps"] * 1e9) + link["rtt_ms"] / 1000
    for r in data["medians"]:
        if r["peer"] == "prfaas" and r["tail_s"] is not None:
            ok = "PASS" if r["tail_s"] <= bound else "FAIL"
            console.print(
                f"pipelining x{r['connections']}: last layer -> done {r['tail_s'] * 1000:.1f} ms"
                f" vs bound 1.5 x layer/link + RTT = {bound * 1000:.1f} ms: {ok}"
            )
