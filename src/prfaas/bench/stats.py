"""Latency percentiles and the bench report with its stable JSON keys (schema prfaas.bench/v1).

JSON report keys (all present; a latency block is null when no request succeeded):
    schema                 "prfaas.bench/v1"
    url, model, endpoint   what was measured
    workload               {"kind": "trace"|"paper", ...the settings that built the plan}
    seed                   RNG seed of the plan
    num_requests           requests sent
    num_ok, num_errors     outcomes
    errors                 {kind: count}, kinds: http_<status>, connect, timeout, disconnected,
                           stream_error, incomplete, bad_response
    num_shed               requests whose outcome was 429 (shed by admission control)
    num_429                429 answers in all (with --retry-429: also those waited out)
    num_resumed            streams cut and resumed from their token ids (--resume-streams)
    duration_s             wall time from the first send to the last response
    offered_rps            requests sent / send window (the planned rate)
    throughput_rps         successful requests / duration_s
    input_tokens_per_s     prompt tokens of successful requests / duration_s
    output_tokens_per_s    generated tokens / duration_s
    mean_input_tokens, mean_output_tokens
    ttft_s, tpot_s, itl_s, e2e_s   {"mean", "p50", "p90", "p99", "max", "count"}
TTFT is the time to the first text chunk; TPOT is per request (last - first token) / (n - 1);
ITL pools every gap between text chunks; percentiles interpolate linearly (numpy's default).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from prfaas.bench.client import RequestResult

SCHEMA = "prfaas.bench/v1"
PERCENTILES = (50, 90, 99)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile level must be in [0, 100], got {q}")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def latency_summary(values: Iterable[float]) -> dict[str, float] | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None
    out = {"mean": sum(vals) / len(vals)}
    out.update({f"p{q}": percentile(vals, q) for q in PERCENTILES})
    out["max"] = max(vals)
    out["count"] = len(vals)
    return out


@dataclass(frozen=True, slots=True)
class RunInfo:
    url: str
    model: str
    endpoint: str
    workload: dict[str, Any]
    seed: int


def build_report(info: RunInfo, results: Sequence[RequestResult], duration_s: float,
                 send_window_s: float) -> dict[str, Any]:
    ok = [r for r in results if r.ok]
    dur = max(duration_s, 1e-9)
    n_in = sum(r.input_tokens for r in ok)
    n_out = sum(r.output_tokens for r in ok)
    return {
        "schema": SCHEMA, "url": info.url, "model": info.model, "endpoint": info.endpoint,
        "workload": info.workload, "seed": info.seed,
        "num_requests": len(results), "num_ok": len(ok), "num_errors": len(results) - len(ok),
        "errors": dict(sorted(Counter(r.error for r in results if not r.ok and r.error).items())),
        # shed by admission control: refused with 429 in the end / 429 answers seen in all
        "num_shed": sum(1 for r in results if r.error == "http_429"),
        "num_429": sum(r.answers_429 for r in results),
        "num_resumed": sum(r.resumes for r in results),
        "duration_s": duration_s,
        "offered_rps": len(results) / send_window_s if send_window_s > 0 else None,
        "throughput_rps": len(ok) / dur,
        "input_tokens_per_s": n_in / dur, "output_tokens_per_s": n_out / dur,
        "mean_input_tokens": n_in / len(ok) if ok else None,
        "mean_output_tokens": n_out / len(ok) if ok else None,
        "ttft_s": latency_summary(r.ttft_s for r in ok if r.ttft_s is not None),
        "tpot_s": latency_summary(t for r in ok if (t := r.tpot_s) is not None),
        "itl_s": latency_summary(g for r in ok for g in r.itl_s),
        "e2e_s": latency_summary(r.e2e_s for r in ok if r.e2e_s is not None),
    }
