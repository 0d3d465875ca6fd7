"""Bandwidth drop, live and simulated: the same deployment file (with a [control]
bandwidth_schedule) and the same request list through `prfaas up` and through its simulator.

    .venv/bin/python benchmarks/bandwidth_drop.py --config examples/paper-emulated.toml \
        --rate 6 --duration 90 --drop 20,50,0.1

The link runs at `factor` x its rate from `start` to `end` emulated seconds after the first
request. Prints, per second, the t of the last decision (live / sim), and per 10 s window the
offload fraction and the modelled egress of offloaded requests (S_kv of what crossed), with the
share of seconds whose t agrees within one threshold grid step. Two t's: the *planned* t (the
threshold search's t for the link capacity the router sees: what the control loop sets) and the
*effective* t (the planned t scaled by the per-request egress / queue triggers).

An edge of the drop that falls on a send time (the paper workload sends every 1/rate s) is moved
to the middle between the two sends around it, and the benchmark says so: on the edge, which side
a request falls on is a race between the router's schedule timer and the request, not a property
of the deployment.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from prfaas.bench.linkwatch import LinkSample, egress_series, longest_over
from prfaas.bench.run import BenchSettings
from prfaas.bench.simlive import Decided, jittered, run_live, simulate
from prfaas.deploy.config import load_deployment
from prfaas.profiles import get_kv_profile
from prfaas.sim.from_deployment import time_scale

ROOT = Path(__file__).resolve().parents[1]


def per_second(
    decided: dict[int, Decided], send: dict[int, float], end: float, *, planned: bool = False
) -> list[int]:
    """The effective (or planned) t of the last decision at or before each whole second."""
    order = sorted(
        (send[i], d.planned_threshold_tokens if planned else d.threshold_tokens)
        for i, d in decided.items()
    )
    out, j, last = [], 0, order[0][1] if order else 0
    for sec in range(int(end) + 1):
        while j < len(order) and order[j][0] <= sec:
            last = order[j][1]
            j += 1
        out.append(last)
    return out


def clear_of_sends(edge: float, sends: list[float]) -> float:
    """`edge`, or the midpoint between the sends around it when it falls on one (within 1 ms)."""
    for k, at in enumerate(sends):
        if abs(at - edge) < 1e-3:
            after = sends[k + 1] if k + 1 < len(sends) else at + 1.0
            return (at + after) / 2
    return edge


def agreement(a: list[int], b: list[int], step: int) -> float:
    """Share of samples within one grid step of each other."""
    return sum(abs(x - y) <= step for x, y in zip(a, b, strict=True)) / len(a)


def within(a: float, b: float, rel: float) -> bool:
    """|a - b| within `rel` of a (the simulator's value); two zeros agree."""
    return abs(a - b) <= rel * abs(a) if a else b == 0


def windows(
    decided: dict[int, Decided], send: dict[int, float], kv: object, width: float
) -> list[tuple[float, float]]:
    """(offload fraction, modelled egress GB) per `width`-second window of send times."""
    bins: dict[int, list[Decided]] = {}
    for i, d in decided.items():
        bins.setdefault(int(send[i] // width), []).append(d)
    out = []
    for k in sorted(bins):
        ds = bins[k]
        off = [d for d in ds if d.offloaded]
        gb = sum(float(kv.bytes(d.input_tokens)) for d in off) / 1e9  # type: ignore[attr-defined]
        out.append((len(off) / len(ds), gb))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "examples" / "paper-emulated.toml")
    ap.add_argument("--rate", type=float, default=6.0, help="paper workload, req/s (emulated)")
    ap.add_argument("--duration", type=float, default=90.0)
    ap.add_argument("--drop", default="20,50,0.1", help="start_s,end_s,factor (emulated s)")
    ap.add_argument("--sim-only", action="store_true")
    ap.add_argument(
        "--self-jitter-ms",
        type=float,
        default=0.0,
        help="also print the simulator's t agreement with itself on sends delayed by up to this "
        "much (3 seeds): the ceiling that timing noise of that size leaves (diagnostic)",
    )
    ap.add_argument(
        "--json", type=Path, help="also write both sides' decisions (with their views) here"
    )
    args = ap.parse_args()
    start, end, factor = (float(x) for x in args.drop.split(","))
    plan = BenchSettings(args.duration, workload="paper", rate_rps=args.rate).plan()
    sends = sorted(r.send_at_s for r in plan)
    moved_edges = (clear_of_sends(start, sends), clear_of_sends(end, sends))
    if moved_edges != (start, end):
        print(
            f"drop edges {start:g}, {end:g} s fall on send times: using "
            f"{moved_edges[0]:.3f}, {moved_edges[1]:.3f} s (mid-way between sends)"
        )
        start, end = moved_edges
    text = args.config.read_text()
    line = f"bandwidth_schedule = [[{start}, {end}, {factor}]]\n"
    text = text.replace("[control]\n", "[control]\n" + line, 1)
    if line not in text:
        text += "\n[control]\n" + line
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "drop.toml"
        path.write_text(text)
        cfg = load_deployment(path)
        send = {r.index: r.send_at_s for r in plan}
        links: list[LinkSample] = []
        sim, _ = simulate(cfg, "prfaas", plan)
        live = sim if args.sim_only else run_live(path, "prfaas", plan, links=links)
        moved = [
            simulate(cfg, "prfaas", jittered(plan, args.self_jitter_ms / 1e3, seed))[0]
            for seed in ((1, 2, 3) if args.self_jitter_ms > 0 else ())
        ]
    step = 100  # the planner's threshold grid step (threshold_step_tokens)
    s_t, l_t = per_second(sim, send, args.duration), per_second(live, send, args.duration)
    s_p = per_second(sim, send, args.duration, planned=True)
    l_p = per_second(live, send, args.duration, planned=True)
    for seed, other in enumerate(moved, 1):
        own = agreement(s_t, per_second(other, send, args.duration), step)
        own_p = agreement(s_p, per_second(other, send, args.duration, planned=True), step)
        print(
            f"sim vs sim, sends delayed by up to {args.self_jitter_ms:g} ms (seed {seed}): "
            f"within one grid step: planned t {own_p:.1%}, effective t {own:.1%}"
        )
    print(
        f"t per second, planned sim / live, effective sim / live; link x{factor:g} "
        f"from {start:g} to {end:g} s:"
    )
    for sec in range(0, len(s_t), 5):
        print(f"  {sec:4d} s  {s_p[sec]:6d} / {l_p[sec]:6d}   {s_t[sec]:6d} / {l_t[sec]:6d}")
    n = len(s_t)
    print(
        f"planned t within one grid step ({step} tokens): {agreement(s_p, l_p, step):.1%} "
        f"of {n} seconds"
    )
    print(
        f"effective t within one grid step ({step} tokens): {agreement(s_t, l_t, step):.1%} "
        f"of {n} seconds"
    )
    kv = get_kv_profile(cfg.engine.kv_profile or cfg.engine.model)
    print("10 s windows: offload sim / live, egress GB (modelled) sim / live")
    rows = list(zip(windows(sim, send, kv, 10), windows(live, send, kv, 10), strict=False))
    for k, (a, b) in enumerate(rows):
        print(f"  {10 * k:4d} s  {a[0]:.3f} / {b[0]:.3f}   {a[1]:7.2f} / {b[1]:7.2f}")
    off = sum(within(a[0], b[0], 0.05) for a, b in rows)
    gb = sum(within(a[1], b[1], 0.05) for a, b in rows)
    print(f"within 5% (relative): offload {off} of {len(rows)} windows, egress {gb} of {len(rows)}")
    if links:
        report_egress(links, time_scale(cfg))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        dump = {
            "send": send,
            "sim": {i: asdict(d) for i, d in sim.items()},
            "live": {i: asdict(d) for i, d in live.items()},
            "links": [asdict(x) for x in links],
        }
        args.json.write_text(json.dumps(dump, indent=1))
    return 0


def report_egress(links: list[LinkSample], scale: float) -> None:
    """Live egress of the PrfaaS -> PD link per second against its capacity then."""
    names = sorted({s.link for s in links if s.link.startswith("prfaas")})
    for name in names:
        series = egress_series(links, name, scale)
        if not series:
            continue
        worst = max((e / c for _, e, c in series if c > 0), default=0.0)
        print(f"live egress {name}, per second (wall), Gbit/s modelled, egress / capacity:")
        for t, e, c in series[::5]:
            print(f"  {t:5.1f} s  {e:7.2f} / {c:6.1f}")
        print(
            f"{name}: longest stretch above capacity + 10%: {longest_over(series, 0.10):.1f} s; "
            f"highest egress / capacity in one second: {worst:.2f}"
        )


if __name__ == "__main__":
    sys.exit(main())
