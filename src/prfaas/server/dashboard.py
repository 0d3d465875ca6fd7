"""The /dashboard data contract (DashboardSource) and a synthetic source for tests and development.

`DashboardSource.snapshot()` returns one JSON-able dict; the page polls it once a second through
GET /dashboard/state (which adds "model") and keeps the time series itself. Shape (every key
present; numbers may be null when unknown; node roles: prefill | decode | draining):

    {
      "time_s": 1767225600.0,          # unix time of the snapshot
      "policy": "prfaas",              # routing policy name
      "threshold_tokens": 19400,       # routing threshold t on the incremental prompt length
      "offload_fraction": 0.18,        # share of recent requests prefilled on the PrfaaS cluster
      "links": [{"name": "prfaas->pd", "egress_gbps": 0.42, "capacity_gbps": 1.0}],
      "nodes": [{"name": "pd-p0", "cluster": "pd", "role": "prefill",
                 "queue_requests": 2, "queue_tokens": 8192}],
      "decisions": [{"request_id": "cmpl-1", "time_s": 1767225599.5, "input_tokens": 30000,
                     "cached_tokens": 4096, "prefill": "prfaas-p0", "decode": "pd-d0",
                     "reason": "l=25904 > t=19400 -> PrfaaS"}]       # newest first, at most 50
    }
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from importlib import resources
from typing import Any, Protocol, runtime_checkable

MAX_DECISIONS = 50


@runtime_checkable
class DashboardSource(Protocol):
    def snapshot(self) -> dict[str, Any]: ...


def empty_snapshot(now_s: float) -> dict[str, Any]:
    """The state shown when no source is attached (the page says so)."""
    return {"time_s": now_s, "policy": None, "threshold_tokens": None, "offload_fraction": None,
            "links": [], "nodes": [], "decisions": []}


def dashboard_html() -> str:
    return resources.files("prfaas.server").joinpath("dashboard.html").read_text(encoding="utf-8")


class SampleDashboardSource:
    """A deterministic, slowly changing fake deployment (PrfaaS node, PD-P, PD-D, one link)."""

    NODES = (("prfaas-p0", "prfaas", "prefill"), ("pd-p0", "pd", "prefill"),
             ("pd-d0", "pd", "decode"))

    def __init__(self, clock: Callable[[], float] = time.time, capacity_gbps: float = 1.0) -> None:
        self.clock = clock
        self.capacity_gbps = capacity_gbps
        self.start_s = clock()

    def snapshot(self) -> dict[str, Any]:
        now = self.clock()
        k = now - self.start_s
        nodes = [
            {"name": name, "cluster": cluster, "role": role,
             "queue_requests": int(3 + 3 * math.sin(k / 5 + i)),
             "queue_tokens": int(20_000 + 15_000 * math.sin(k / 7 + i))}
            for i, (name, cluster, role) in enumerate(self.NODES)
        ]
        decisions = []
        for j in range(min(int(k) + 1, 12)):
            n = int(k) - j
            long = n % 3 == 0
            length = 30_000 + 97 * n if long else 4_000 + 13 * n
            decisions.append({
                "request_id": f"cmpl-{n:06d}", "time_s": now - j, "input_tokens": length,
                "cached_tokens": 512 * (n % 4), "prefill": "prfaas-p0" if long else "pd-p0",
                "decode": "pd-d0",
                "reason": (f"l={length - 512 * (n % 4)} > t=19400 -> PrfaaS" if long
                           else f"l={length - 512 * (n % 4)} <= t=19400 -> local PD"),
            })
        egress = self.capacity_gbps * (0.55 + 0.35 * math.sin(k / 4))
        return {
            "time_s": now, "policy": "prfaas", "threshold_tokens": 19_400,
            "offload_fraction": round(0.3 + 0.1 * math.sin(k / 9), 4),
            "links": [{"name": "prfaas->pd", "egress_gbps": round(egress, 4),
                       "capacity_gbps": self.capacity_gbps}],
            "nodes": nodes, "decisions": decisions,
        }
