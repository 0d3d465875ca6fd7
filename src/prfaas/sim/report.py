"""Results as stable JSON (docs/simulate-json.md) and as human-readable tables."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from prfaas.sim.findmax import MaxRateCriterion, MaxRateResult
from prfaas.sim.runner import Prepared, RunConfig, planner_lambda
from prfaas.sim.state import SimResult

SCHEMA_VERSION = 1


def clean(value: Any) -> Any:
    """NaN/inf -> null, tuples -> lists, recursively (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def _planner(prep: Prepared, policy: str) -> dict[str, Any]:
    from prfaas.policy.registry import DEPLOYMENT_OF

    d = prep.plan.deployments[DEPLOYMENT_OF[policy]]
    return {"lambda_max": d.lambda_max, "ttft_mean_s": d.ttft_mean_s, "ttft_p90_s": d.ttft_p90_s}


def _initial(result: SimResult) -> dict[str, int]:
    s = result.setup
    counts = {"n_prfaas": 0, "n_p": 0, "n_d": 0}
    for c in s.clusters:
        if c.role == "prfaas":
            counts["n_prfaas"] += c.prefill_nodes
        else:
            counts["n_p"] += c.prefill_nodes
            counts["n_d"] += c.decode_nodes
    counts["threshold_tokens"] = s.params.threshold_tokens
    return counts


def run_doc(
    prep: Prepared, results: dict[str, SimResult], between: tuple[float, float] | None = None
) -> dict[str, Any]:
    """The `prfaas simulate --json` document for simulated runs."""
    policies: dict[str, Any] = {}
    for name, res in results.items():
        extra = {}
        if between is not None:
            extra = {
                "window": {
                    "start_s": between[0],
                    "end_s": between[1],
                    "metrics": res.metrics(between),
                }
            }
        policies[name] = {
            "deployment": _initial(res),
            "final_deployment": res.final_deployment,
            "planner": _planner(prep, name),
            "metrics": res.metrics(),
            "rebalances": res.rebalances,
            "events": res.events,
            "sim_end_s": res.sim_end_s,
            **extra,
        }
    doc = {
        "schema": SCHEMA_VERSION,
        "scenario": prep.scenario.name,
        "workload": prep.workload,
        "policies": policies,
    }
    return clean(doc)  # type: ignore[no-any-return]


def maxrate_doc(
    cfg: RunConfig, prep: Prepared, found: dict[str, MaxRateResult], crit: MaxRateCriterion
) -> dict[str, Any]:
    """The `--find-max-rate --json` document."""
    policies: dict[str, Any] = {}
    for name, res in found.items():
        lam = planner_lambda(prep, name)
        policies[name] = {
            "planner": _planner(prep, name),
            "find_max_rate": {
                "max_stable_rate": res.max_stable_rate,
                "max_rate": res.max_rate,
                "stable_vs_planner": (res.max_stable_rate / lam) if res.max_stable_rate else None,
                "probes": [p.as_dict() for p in res.probes],
            },
        }
    doc = {
        "schema": SCHEMA_VERSION,
        "scenario": prep.scenario.name,
        "workload": prep.workload | {"requests": cfg.requests or 20_000},
        "criterion": {
            "backlog_fraction": crit.backlog_fraction,
            "ttft_slo_s": crit.ttft_slo_s,
            "rel_tol": crit.rel_tol,
        },
        "policies": policies,
    }
    return clean(doc)  # type: ignore[no-any-return]


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, allow_nan=False)


def _f(x: Any, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


COLUMNS = (
    "policy",
    "P/D/PrfaaS",
    "t",
    "req/s",
    "TTFT mean",
    "P50",
    "P90",
    "P99",
    "SLO",
    "offload",
    "egress Gbps",
    "util P99",
    "queue mean/max",
    "prefix hit",
    "pulled GB",
)


def table(doc: dict[str, Any]) -> str:
    """One row per policy (the --compare table)."""
    rows: list[tuple[str, ...]] = [COLUMNS]
    for name, p in doc["policies"].items():
        m, d = p["metrics"], p["deployment"]
        q = [v for v in m["queue_depth"].values()]
        qmean = sum(v["mean"] or 0 for v in q)
        qmax = max((v["max"] or 0 for v in q), default=0)
        per = ", ".join(f"{c} {_pct(v)}" for c, v in m["prefix_hit_rate"].items())
        hits = f"{_pct(m['prefix_hit_rate_all'])} ({per})" if per else "-"
        rows.append(
            (
                name,
                f"{d['n_p']}/{d['n_d']}/{d['n_prfaas']}",
                str(d["threshold_tokens"] or "-"),
                _f(m["throughput"]["requests_per_s"], ".3f"),
                _f(m["ttft_s"]["mean"]),
                _f(m["ttft_s"]["p50"]),
                _f(m["ttft_s"]["p90"]),
                _f(m["ttft_s"]["p99"]),
                _pct(m["slo"]["attainment"]),
                _pct(m["offload_fraction"]),
                _f(m["egress"]["mean_gbps"]),
                _pct(m["egress"]["p99_util"]),
                f"{qmean:.1f}/{qmax:.0f}",
                hits,
                _f(m["cross_cluster_cache_bytes"] / 1e9, ".1f"),
            )
        )
    return _render(rows)


def maxrate_table(doc: dict[str, Any]) -> str:
    rows: list[tuple[str, ...]] = [
        (
            "policy",
            "planner λ_max",
            "max stable rate",
            "vs planner",
            f"max rate (P90 TTFT <= {doc['criterion']['ttft_slo_s']:g} s)",
            "probes",
        )
    ]
    for name, p in doc["policies"].items():
        f = p["find_max_rate"]
        rows.append(
            (
                name,
                _f(p["planner"]["lambda_max"], ".3f"),
                _f(f["max_stable_rate"], ".3f"),
                _pct(f["stable_vs_planner"]),
                _f(f["max_rate"], ".3f"),
                str(len(f["probes"])),
            )
        )
    return _render(rows)


def _render(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def headline(m: dict[str, Any]) -> dict[str, float | None]:
    """The scalar metrics averaged across seeds (the --seeds summary)."""
    queues = [v["mean"] for v in m["queue_depth"].values() if v["mean"] is not None]
    return {
        "requests_per_s": m["throughput"]["requests_per_s"],
        "ttft_mean_s": m["ttft_s"]["mean"],
        "ttft_p50_s": m["ttft_s"]["p50"],
        "ttft_p90_s": m["ttft_s"]["p90"],
        "ttft_p99_s": m["ttft_s"]["p99"],
        "prefill_queue_mean": sum(queues) if queues else None,
        "waiting_mean": m["waiting"]["mean"],
        "waiting_max": m["waiting"]["max"],
        "offload_fraction": m["offload_fraction"],
        "egress_mean_gbps": m["egress"]["mean_gbps"],
    }


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def seeds_doc(seeds: list[int], docs: list[dict[str, Any]]) -> dict[str, Any]:
    """--seeds K: every per-seed document plus the mean of the headline metrics per policy."""
    summary: dict[str, Any] = {}
    for name in docs[0]["policies"]:
        parts = {"run": [headline(d["policies"][name]["metrics"]) for d in docs]}
        if "window" in docs[0]["policies"][name]:
            parts["window"] = [headline(d["policies"][name]["window"]["metrics"]) for d in docs]
        summary[name] = {
            part: {k: _mean([h[k] for h in rows]) for k in rows[0]} for part, rows in parts.items()
        }
    return clean({"schema": SCHEMA_VERSION, "seeds": seeds, "summary": summary, "runs": docs})  # type: ignore[no-any-return]


SEED_COLUMNS = ("TTFT mean", "P90", "P99", "prefill queue", "waiting mean", "waiting max")


def seeds_table(doc: dict[str, Any]) -> str:
    """Mean over seeds, whole run and (if given) the window, one row per policy and part."""
    rows: list[tuple[str, ...]] = [("policy", "part", *SEED_COLUMNS)]
    for name, parts in doc["summary"].items():
        for part, h in parts.items():
            rows.append(
                (
                    name,
                    part,
                    _f(h["ttft_mean_s"]),
                    _f(h["ttft_p90_s"]),
                    _f(h["ttft_p99_s"]),
                    _f(h["prefill_queue_mean"]),
                    _f(h["waiting_mean"]),
                    _f(h["waiting_max"], ".1f"),
                )
            )
    return f"mean over seeds {doc['seeds']}\n" + _render(rows)
