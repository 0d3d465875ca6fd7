"""The router's full state for operators (GET /internal/state on the control listener only)."""

from __future__ import annotations

from typing import Any

from prfaas.router.backend import RouterBackend
from prfaas.router.rebalancer import control_state


def router_state(backend: RouterBackend) -> dict[str, Any]:
    nodes = {
        r.name: {
            "cluster": r.cluster,
            "role": r.role,
            "alive": r.alive,
            "registered": r.registered,
            "draining": r.draining,
            "url": r.url,
            "served": r.served,
            "failures": r.failures,
            "prefill_inflight": r.prefill_inflight,
            "decode_active": r.decode_active,
        }
        for r in backend.node_records()
    }
    links = {
        s.name: {
            "egress_gbps": s.egress_gbps,
            "bytes_total": s.bytes_total,
            "capacity_gbps": s.capacity_gbps,
            "in_flight_bytes": s.in_flight_bytes,  # modelled, from the senders' telemetry
        }
        for s in backend.bandwidth.links.values()
    }
    history = backend.rebalancer.history if backend.rebalancer is not None else []
    return {
        "nodes": nodes,
        "links": links,
        "policy": backend.policy_name,
        "threshold_tokens": backend.threshold_tokens,
        "offload_fraction": backend.offload_fraction(),
        "index_blocks": {n: backend.members.index.blocks_held(n) for n in nodes},
        "rebalances": history,
        "control": control_state(backend),
        "routed": len(backend.route_s),
        "route_ms": percentiles_ms(backend.route_s),
        "route_cpu_ms": percentiles_ms(backend.route_cpu_s),
        "relays": {r.name: r.relays for r in backend.node_records()},
        "cluster": backend.cluster.summary() if backend.cluster is not None else {},
    }


def percentiles_ms(samples: Any) -> dict[str, float]:
    values = sorted(samples)
    if not values:
        return {}
    return {
        f"p{q}": round(1e3 * values[min(len(values) - 1, q * len(values) // 100)], 4)
        for q in (50, 90, 99)
    }
