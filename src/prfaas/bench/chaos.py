"""Chaos-run accounting: classify each request (ok, failed cleanly, lost) and summarise a fault.

A request is **lost** when the client cannot tell it failed or it got the wrong answer: it hung
(timeout), its stream ended without `[DONE]` and without an error, the connection dropped, or it
finished "ok" with text other than the engine's deterministic output. It was **shed** when
admission control refused it (HTTP 429, before any work). It **failed** when the server said so
otherwise (an HTTP error or an in-band stream error); a failure whose message carries an internal
address (`host:port`) is also counted as **leaky**. A stream the client resumed after a cut
(`--resume-streams`) is judged on its stitched text like any other.
"""

from __future__ import annotations

import asyncio
import math
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prfaas.bench.client import RequestResult

LOST_ERRORS = frozenset({"timeout", "incomplete", "disconnected", "bad_response"})
# An IPv4 address with a port, or a bracketed IPv6 one: what must never reach a client.
_ADDRESS = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}:\d{2,5}\b|\[[0-9a-fA-F:]+\]:\d{2,5}")


@dataclass(frozen=True, slots=True)
class Verdict:
    """One request's outcome: 'ok', 'failed' or 'lost', and why (for the lost and failed)."""

    outcome: str
    why: str = ""
    leaky: bool = False


def classify(result: RequestResult, expected_text: str | None) -> Verdict:
    """`expected_text` is the exact output when it is known (emulated engine), else None."""
    if result.ok:
        if expected_text is not None and result.text != expected_text:
            return Verdict("lost", _text_difference(result.text, expected_text))
        return Verdict("ok")
    error = result.error or "unknown"
    if error == "http_429":
        return Verdict("shed", "429")
    if error in LOST_ERRORS:
        return Verdict("lost", f"{error}: {result.detail or ''}".strip())
    leaky = bool(_ADDRESS.search(result.detail or ""))
    return Verdict("failed", f"{error}: {result.detail or ''}".strip(), leaky)


def _text_difference(got: str, want: str) -> str:
    common = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), None)
    if common is None:
        common = min(len(got), len(want))
    return f"wrong text: {len(got)} chars vs {len(want)} expected, first difference at {common}"


@dataclass(frozen=True, slots=True)
class ScenarioRow:
    """One line of the chaos table."""

    scenario: str
    sent: int
    ok: int
    failed: int
    leaky: int
    lost: int
    recovery_s: float | None  # from the fault's start until requests succeed again; None: never
    examples: tuple[str, ...]  # a few reasons, for the lost and failed
    ttft_ratio: float | None = None  # p50 TTFT just after the fault / before it (None: no data)
    shed: int = 0  # refused with 429 by admission control
    shed_ms_max: float | None = None  # the slowest 429 answer (ms)
    fault_p99_ttft_s: float | None = None  # P99 TTFT of the requests accepted during the fault
    probe_ratio: float | None = None  # median probe TTFT after the fault / before it
    resumed: int = 0  # requests whose client resumed a cut stream (--resume-streams)
    shed_ms_p50: float | None = None  # the median 429 answer (ms)
    shed_ms_p99: float | None = None  # P99 of the 429 answers (ms)
    probe_ttfts_s: tuple[tuple[float, ...], tuple[float, ...]] = ((), ())  # (before, after)


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def quantile(xs: Sequence[float], q: float) -> float | None:
    """The q-quantile by nearest rank (P99 of fewer than 100 samples is their maximum)."""
    if not xs:
        return None
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def probe_ttfts(results: Sequence[RequestResult], which: set[int]) -> tuple[float, ...]:
    """The TTFTs of the ok probes in `which`, in send order."""
    return tuple(r.ttft_s for r in sorted(results, key=lambda r: r.send_s)
                 if r.index in which and r.ok and r.ttft_s is not None)


def probe_ratio(results: Sequence[RequestResult], before: set[int],
                after: set[int]) -> float | None:
    """Median TTFT of the `after` probes over that of the `before` ones (same prompt length)."""
    b = _median(list(probe_ttfts(results, before)))
    a = _median(list(probe_ttfts(results, after)))
    return a / b if a is not None and b else None


def fault_p99_ttft(results: Sequence[RequestResult], window: tuple[float, float]) -> float | None:
    """P99 TTFT of ok requests sent within `window` (s into the run)."""
    xs = sorted(r.ttft_s for r in results if r.ok and r.ttft_s is not None
                and window[0] <= r.send_s < window[1])
    return xs[min(len(xs) - 1, int(0.99 * len(xs)))] if xs else None


def recovery_s(results: Sequence[RequestResult], verdicts: Sequence[Verdict],
               fault_at_s: float) -> float | None:
    """Seconds from the fault until the first request after which every later one succeeded.

    Requests are taken in send order; 0.0 when nothing sent after the fault failed.
    """
    order = sorted(range(len(results)), key=lambda i: results[i].send_s)
    last_bad = None
    for i in order:  # a 429 is the deployment protecting itself, not a failure to recover from
        if verdicts[i].outcome not in ("ok", "shed") and results[i].send_s >= fault_at_s - 1e-9:
            last_bad = i
    if last_bad is None:
        return 0.0
    later = [results[i].send_s for i in order if results[i].send_s > results[last_bad].send_s]
    return (later[0] - fault_at_s) if later else None


def ttft_ratio(results: Sequence[RequestResult], fault_at_s: float,
               after: tuple[float, float]) -> float | None:
    """p50 TTFT of ok requests sent in [fault + after[0], fault + after[1]) over the p50 before."""
    def p50(xs: list[float]) -> float | None:
        return sorted(xs)[len(xs) // 2] if xs else None

    before = p50([r.ttft_s for r in results if r.ok and r.ttft_s is not None
                  and r.send_s < fault_at_s])
    lo, hi = fault_at_s + after[0], fault_at_s + after[1]
    late = p50([r.ttft_s for r in results if r.ok and r.ttft_s is not None
                and lo <= r.send_s < hi])
    return late / before if before and late is not None else None


def summarise(scenario: str, results: Sequence[RequestResult], fault_at_s: float,
              expected: Callable[[RequestResult], str | None],
              probe_window: tuple[float, float] = (1.0, 6.0),
              fault_window: tuple[float, float] | None = None,
              probes: tuple[set[int], set[int]] = (set(), set())) -> ScenarioRow:
    """The table row for one scenario's results; `expected` gives each request's exact text.
    `fault_window`: when the fault lasted (s into the run); `probes`: indices of the probe
    requests sent before and after it."""
    verdicts = [classify(r, expected(r)) for r in results]
    count = {k: sum(1 for v in verdicts if v.outcome == k)
             for k in ("ok", "failed", "lost", "shed")}
    examples = tuple(dict.fromkeys(v.why[:100] for v in verdicts
                                   if v.outcome in ("failed", "lost")))[:3]
    shed_ms = [r.e2e_s * 1000 for r, v in zip(results, verdicts, strict=True)
               if v.outcome == "shed" and r.e2e_s is not None]
    window = fault_window or (fault_at_s, fault_at_s)
    return ScenarioRow(scenario, len(results), count["ok"], count["failed"],
                       sum(1 for v in verdicts if v.leaky), count["lost"],
                       recovery_s(results, verdicts, fault_at_s), examples,
                       ttft_ratio(results, fault_at_s, probe_window), count["shed"],
                       max(shed_ms) if shed_ms else None, fault_p99_ttft(results, window),
                       probe_ratio(results, *probes), sum(1 for r in results if r.resumes),
                       quantile(shed_ms, 0.5), quantile(shed_ms, 0.99),
                       (probe_ttfts(results, probes[0]), probe_ttfts(results, probes[1])))


def twin_lines(rows: list[dict[str, Any]], twins: list[dict[str, Any]]) -> list[str]:
    """Paired probe ratios from two `benchmarks/chaos.py --json` files: each scenario's probes
    after the fault over the same probes of its --no-fault twin (same seed: the same load at the
    same moments; started together: the same machine load)."""
    by_name = {t["scenario"]: t for t in twins}
    lines = []
    for row in rows:
        after = row["probe_ttfts_s"][1]
        twin = by_name.get(row["scenario"])
        control = twin["probe_ttfts_s"][1] if twin else []
        ratio = statistics.median(after) / statistics.median(control) if after and control \
            else None
        lines.append(f"{row['scenario']:<24} probe x vs no-fault twin "
                     f"{'-' if ratio is None else format(ratio, '.2f')}; after ms "
                     f"{' '.join(f'{x * 1000:.0f}' for x in after)}; twin "
                     f"{' '.join(f'{x * 1000:.0f}' for x in control)}")
    return lines


class LoopLag:
    """How late this (the client's) event loop wakes a 50 ms sleep: a 429's time as the client
    measures it includes the client's own lag, which this tells apart."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    async def run(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.05)
            self.samples.append((time.perf_counter() - t0 - 0.05) * 1000)

    def line(self) -> str:
        xs = sorted(self.samples) or [0.0]
        p50, p99 = xs[len(xs) // 2], xs[int(0.99 * (len(xs) - 1))]
        return f"client loop lag ms p50 {p50:.0f} p99 {p99:.0f} max {xs[-1]:.0f}"
