"""One bench run: settings -> plan -> open-loop load against a URL -> report dict."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from prfaas.bench.client import RequestResult, discover_model, normalize_url, run_plan
from prfaas.bench.report import BenchProgress
from prfaas.bench.stats import RunInfo, build_report
from prfaas.bench.workload import PlannedRequest, Shaping, paper_plan, trace_plan
from prfaas.errors import UsageError


@dataclass(frozen=True, slots=True)
class BenchSettings:
    """Everything that defines a run except the URL (so --compare reuses it per policy)."""

    duration_s: float
    trace: Path | None = None
    speedup: float = 1.0
    limit: int | None = None
    workload: str | None = None  # "paper"
    rate_rps: float | None = None
    arrival: str = "uniform"
    length_scale: float = 1.0
    seed: int = 0
    endpoint: str = "completions"
    model: str | None = None
    timeout_s: float = 600.0
    ignore_eos: bool = True
    tag_requests: bool = False  # send the plan index as `seed` (the router logs it per decision)
    retry_429: bool = False  # wait out a 429's Retry-After and resend
    resume_streams: bool = False  # resend a cut stream with its token ids (bench/resume.py)
    shaping: Shaping = field(default_factory=Shaping)

    def plan(self) -> list[PlannedRequest]:
        if self.duration_s <= 0:
            raise UsageError(f"--duration must be > 0, got {self.duration_s}")
        if self.trace is not None:
            return trace_plan(self.trace, speedup=self.speedup, duration_s=self.duration_s,
                              limit=self.limit, shaping=self.shaping)
        if self.workload == "paper":
            if self.rate_rps is None:
                raise UsageError("--workload paper needs --rate")
            return paper_plan(rate_rps=self.rate_rps, duration_s=self.duration_s,
                              length_scale=self.length_scale, arrival=self.arrival,
                              seed=self.seed, shaping=self.shaping)
        raise UsageError("give a workload: --trace FILE or --workload paper --rate R")

    def describe(self) -> dict[str, Any]:
        """The workload block of the JSON report."""
        common = {"duration_s": self.duration_s, **asdict(self.shaping)}
        if self.trace is not None:
            return {"kind": "trace", "trace": str(self.trace), "speedup": self.speedup,
                    "limit": self.limit, **common}
        return {"kind": self.workload, "rate_rps": self.rate_rps, "arrival": self.arrival,
                "length_scale": self.length_scale, **common}


def _send_window_s(plan: list[PlannedRequest], duration_s: float) -> float:
    """The span the plan offers load over: n gaps-worth of the mean gap, capped at duration_s."""
    if len(plan) < 2:
        return duration_s
    span = plan[-1].send_at_s - plan[0].send_at_s
    return min(duration_s, span * len(plan) / (len(plan) - 1)) if span > 0 else duration_s


def run_bench(url: str, settings: BenchSettings, *, console: Console | None = None,
              progress: bool = True,
              keep: list[RequestResult] | None = None) -> dict[str, Any]:
    """Run the plan against `url` and return the report (see stats.py for its keys); per-request
    results are appended to `keep` when given (for --save-result)."""
    url = normalize_url(url)
    plan = settings.plan()
    if not plan:
        raise UsageError("the workload produced no requests in --duration; raise it or the rate")
    console = console or Console(stderr=True)
    return asyncio.run(_run(url, settings, plan, console, progress, keep))


async def _run(url: str, settings: BenchSettings, plan: list[PlannedRequest], console: Console,
               progress: bool, keep: list[RequestResult] | None = None) -> dict[str, Any]:
    model = settings.model or await discover_model(url)
    with BenchProgress(len(plan), console, enabled=progress) as bar:
        results, wall_s = await run_plan(url, plan, model=model, endpoint=settings.endpoint,
                                         timeout_s=settings.timeout_s,
                                         ignore_eos=settings.ignore_eos, on_done=bar.done,
                                         tag=settings.tag_requests,
                                         retry_429=settings.retry_429,
                                         resume_streams=settings.resume_streams)
    if keep is not None:
        keep.extend(results)
    info = RunInfo(url=url, model=model, endpoint=settings.endpoint,
                   workload=settings.describe(), seed=settings.seed)
    return build_report(info, results, wall_s, _send_window_s(plan, settings.duration_s))
