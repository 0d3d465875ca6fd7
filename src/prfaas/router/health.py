"""What /health says: per-cluster liveness and whether any path can serve (pure over records).

`ok` is true while at least one prefill node (any cluster: a PrfaaS prefill feeds a PD decode
node) and one decode node accept work; `status` is `ok` when every node is up, `degraded` when some
are not but a path remains, `unavailable` when none does (the HTTP status is then 503). Counts and
cluster names only: node names, roles and addresses stay on the control listener.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol


class _Record(Protocol):
    cluster: str
    role: str
    alive: bool

    @property
    def usable(self) -> bool: ...


def cluster_status(alive: int, expected: int) -> str:
    if alive == expected:
        return "ok"
    return "down" if alive == 0 else "degraded"


def health_status(records: Iterable[_Record]) -> dict[str, Any]:
    recs = list(records)
    clusters: dict[str, dict[str, Any]] = {}
    for r in recs:
        c = clusters.setdefault(r.cluster, {"alive": 0, "expected": 0})
        c["expected"] += 1
        c["alive"] += r.alive
    for c in clusters.values():
        c["status"] = cluster_status(c["alive"], c["expected"])
    path = any(r.usable and r.role == "prefill" for r in recs) and any(
        r.usable and r.role == "decode" for r in recs
    )
    registered = sum(r.alive for r in recs)
    status = "unavailable" if not path else "ok" if registered == len(recs) else "degraded"
    return {
        "ok": path,
        "status": status,
        "registered": registered,
        "expected": len(recs),
        "clusters": dict(sorted(clusters.items())),
    }
