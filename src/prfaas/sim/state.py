"""Simulator state containers: a cluster's nodes and cache pool, and one run's result."""

from __future__ import annotations

from dataclasses import dataclass, field

from prfaas.cache.pool import HybridPrefixPool
from prfaas.core.lifecycle import RequestRecord
from prfaas.core.metrics import RunSeries, summarise, window
from prfaas.core.view import ClusterState
from prfaas.sim.fastprofile import prefill_time_fn
from prfaas.sim.nodes import DecodeNode, PrefillNode
from prfaas.sim.setup import ClusterSpec, SimSetup

Node = PrefillNode | DecodeNode


class SimCluster:
    """A cluster's nodes (kept sorted by id), its prefix-cache pool and prefill speed."""

    __slots__ = ("name", "nodes", "pool", "role", "spec", "state", "time_fn")

    def __init__(self, spec: ClusterSpec, pool: HybridPrefixPool | None) -> None:
        self.spec = spec
        self.name = spec.name
        self.role = spec.role
        self.pool = pool
        self.time_fn = prefill_time_fn(spec.prefill)
        self.nodes: list[Node] = []
        self.state: ClusterState | None = None  # cached view; nodes reset it when they change

    def view(self) -> ClusterState:
        state = self.state
        if state is None:
            state = self.state = ClusterState(
                self.name, self.role, tuple(n.view() for n in self.nodes)
            )
        return state

    def add(self, node: Node, index: int | None = None) -> None:
        node.owner = self
        if index is None:
            self.nodes.append(node)
        else:
            self.nodes[index] = node
        self.state = None

    def prefill_nodes(self) -> list[PrefillNode]:
        return [n for n in self.nodes if isinstance(n, PrefillNode)]

    def decode_nodes(self) -> list[DecodeNode]:
        return [n for n in self.nodes if isinstance(n, DecodeNode)]


@dataclass(slots=True)
class SimResult:
    """Lifecycle records, sampled series and run statistics."""

    setup: SimSetup
    records: list[RequestRecord]
    series: RunSeries
    events: int
    wall_s: float
    sim_end_s: float
    rebalances: list[dict[str, object]] = field(default_factory=list)
    final_deployment: dict[str, int] = field(default_factory=dict)

    def metrics(self, between: tuple[float, float] | None = None) -> dict[str, object]:
        """The run's metrics; `between` restricts them to arrivals (and samples) in [start, end)."""
        if between is None:
            return summarise(self.records, self.series, self.setup.slo)
        records, series = window(self.records, self.series, *between)
        return summarise(records, series, self.setup.slo)
