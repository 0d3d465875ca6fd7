"""--find-max-rate: the largest arrival rate a deployment sustains, found by bisection.

Criterion (documented in docs/results.md): a probe runs N requests at rate R.
- Queues are bounded if, when the last request arrives, at most `backlog_fraction` x N requests
  are still waiting for their first token (an overloaded system accumulates (R - capacity) x
  duration of them; a stable one holds O(1 / (1 - load)), independent of N), and nothing was
  rejected.
- The SLO holds if the P90 TTFT of the second half of the arrivals is <= ttft_slo_s.
`max_stable_rate` is the largest bounded rate; `max_rate` the largest bounded rate meeting the SLO.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from prfaas.core.lifecycle import Phase
from prfaas.core.metrics import percentile
from prfaas.core.request import RequestSpec
from prfaas.sim.engine import Simulation
from prfaas.sim.setup import SimSetup


@dataclass(frozen=True, slots=True)
class MaxRateCriterion:
    backlog_fraction: float = 0.01
    ttft_slo_s: float = 30.0
    rel_tol: float = 0.005
    max_probes: int = 40


@dataclass(frozen=True, slots=True)
class Probe:
    rate: float
    bounded: bool
    meets_slo: bool
    backlog: int
    p90_ttft_s: float
    mean_ttft_s: float
    events: int

    def as_dict(self) -> dict[str, object]:
        return {
            "rate": self.rate,
            "bounded": self.bounded,
            "meets_slo": self.meets_slo,
            "backlog": self.backlog,
            "p90_ttft_s": _finite(self.p90_ttft_s),
            "mean_ttft_s": _finite(self.mean_ttft_s),
        }


@dataclass(slots=True)
class MaxRateResult:
    max_stable_rate: float | None
    max_rate: float | None
    probes: list[Probe] = field(default_factory=list)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def run_probe(
    setup: SimSetup, requests: Sequence[RequestSpec], rate: float, crit: MaxRateCriterion
) -> Probe:
    result = Simulation(setup, requests).run()
    t_last = requests[-1].arrival_s
    backlog = 0
    rejected = 0
    for r in result.records:
        if r.phase == Phase.REJECTED:
            rejected += 1
        elif not r.times[Phase.DECODING] <= t_last:
            backlog += 1
    half = sorted(
        r.ttft_s for r in result.records[len(result.records) // 2 :] if r.phase == Phase.FINISHED
    )
    p90 = percentile(half, 90) if half else math.inf
    mean = math.fsum(half) / len(half) if half else math.inf
    bounded = rejected == 0 and backlog <= crit.backlog_fraction * len(requests)
    return Probe(
        rate, bounded, bounded and p90 <= crit.ttft_slo_s, backlog, p90, mean, result.events
    )


def find_max_rate(
    setup: SimSetup,
    make_requests: Callable[[float], Sequence[RequestSpec]],
    start_rate: float,
    crit: MaxRateCriterion,
    on_probe: Callable[[Probe], None] | None = None,
) -> MaxRateResult:
    """Expand from start_rate until a probe fails, then bisect; the same seed at every rate."""
    out = MaxRateResult(None, None)
    cache: dict[float, Probe] = {}

    def probe(rate: float) -> Probe:
        if rate not in cache:
            cache[rate] = run_probe(setup, make_requests(rate), rate, crit)
            out.probes.append(cache[rate])
            if on_probe is not None:
                on_probe(cache[rate])
        return cache[rate]

    out.max_stable_rate = _search(probe, start_rate, crit, lambda p: p.bounded, cache)
    if out.max_stable_rate is not None:
        out.max_rate = _search(probe, out.max_stable_rate, crit, lambda p: p.meets_slo, cache)
    return out


def _search(
    probe: Callable[[float], Probe],
    start: float,
    crit: MaxRateCriterion,
    ok: Callable[[Probe], bool],
    known: dict[float, Probe],
) -> float | None:
    # Earlier probes already bracket the answer (common random numbers: same requests per rate).
    lo = max((r for r, p in known.items() if ok(p)), default=0.0)
    hi = min((r for r, p in known.items() if not ok(p) and r > lo), default=math.inf)
    rate = (
        start
        if lo == 0.0 and math.isinf(hi)
        else (lo * 1.5 if math.isinf(hi) else ((lo + hi) / 2 if lo > 0 else hi / 1.5))
    )
    for _ in range(crit.max_probes):
        if ok(probe(rate)):
            lo = rate
            rate = rate * 1.5 if math.isinf(hi) else (lo + hi) / 2
        else:
            hi = rate
            rate = rate / 1.5 if lo == 0.0 else (lo + hi) / 2
        if lo > 0 and math.isfinite(hi) and (hi - lo) <= crit.rel_tol * lo:
            break
        if hi < 1e-6:
            break
    return lo if lo > 0 else None
