"""`prfaas bench --save-result`: the run in the JSON shape of `vllm bench serve --save-result`."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from prfaas.bench.client import RequestResult
from prfaas.bench.stats import percentile

METRIC_PERCENTILES = (50, 90, 99)  # vLLM's --metric-percentiles default is 99; we add 50 and 90


def _ms(values: Iterable[float | None]) -> list[float]:
    return [v * 1000.0 for v in values if v is not None and math.isfinite(v)]


def _metric(out: dict[str, Any], name: str, vals_ms: Sequence[float]) -> None:
    """mean/median/std/p<N> keys for one metric (0.0 when there is no sample, as vLLM does)."""
    out[f"mean_{name}_ms"] = statistics.fmean(vals_ms) if vals_ms else 0.0
    out[f"median_{name}_ms"] = statistics.median(vals_ms) if vals_ms else 0.0
    out[f"std_{name}_ms"] = statistics.pstdev(vals_ms) if vals_ms else 0.0
    for q in METRIC_PERCENTILES:
        out[f"p{q}_{name}_ms"] = percentile(vals_ms, q) if vals_ms else 0.0


def vllm_result(report: dict[str, Any], results: Sequence[RequestResult],
                label: str = "prfaas") -> dict[str, Any]:
    """Keys as vLLM's bench serve writes them (throughput, TTFT/TPOT/ITL/E2E percentiles)."""
    ok = [r for r in results if r.ok]
    dur = max(float(report["duration_s"]), 1e-9)
    n_in = sum(r.input_tokens for r in ok)
    n_out = sum(r.output_tokens for r in ok)
    out: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y%m%d-%H%M%S"),
        "backend": "openai", "label": label, "model_id": report["model"],
        "tokenizer_id": report["model"], "num_prompts": len(results),
        "request_rate": report.get("offered_rps") or "inf", "burstiness": 1.0,
        "max_concurrency": None, "duration": dur, "completed": len(ok),
        "failed": len(results) - len(ok), "total_input_tokens": n_in,
        "total_output_tokens": n_out, "request_throughput": len(ok) / dur,
        "request_goodput": None, "output_throughput": n_out / dur,
        "total_token_throughput": (n_in + n_out) / dur,
        "input_lens": [r.input_tokens for r in results],
        "output_lens": [r.output_tokens for r in results],
        "ttfts": [r.ttft_s or 0.0 for r in results],
        "itls": [list(r.itl_s) for r in results],
        "errors": [r.error or "" for r in results],
    }
    _metric(out, "ttft", _ms(r.ttft_s for r in ok))
    _metric(out, "tpot", _ms(r.tpot_s for r in ok))
    _metric(out, "itl", _ms(g for r in ok for g in r.itl_s))
    _metric(out, "e2el", _ms(r.e2e_s for r in ok))
    return out
