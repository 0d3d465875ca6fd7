"""Simulator state containers: a cluster's nodes and cache pool, and one run's result."""

from __future__ import annotations

from dataclasses import dataclass, field

from prfaas.cache.pool import HybridPrefixPool
from prfaas.core.fleet import ClusterIndex
from prfaas.core.lifecycle import RequestRecord
from prfaas.core.metrics import RunSeries, summarise, window
from prfaas.core.view import ClusterState
from prfaas.sim.decode_node import DecodeNode
from prfaas.sim.fastprofile import prefill_time_fn
from prfaas.sim.nodes import PrefillNode
from prfaas.sim.setup import ClusterSpec, SimSetup

Node = PrefillNode | DecodeNode


class SimCluster:
    """A cluster's nodes (kept sorted by id), its prefix-cache pool and prefill speed.

    Its ClusterIndex gets a node's new view only when a decision needs it (nodes that changed
    since the last one wait in `dirty`), so a view costs O(changed nodes x log n), not O(n).
    """

    __slots__ = (
        "dirty",
        "index",
        "name",
        "nodes",
        "pool",
        "role",
        "spec",
        "state",
        "state_version",
        "time_fn",
    )

    def __init__(self, spec: ClusterSpec, pool: HybridPrefixPool | None) -> None:
        self.spec = spec
        self.name = spec.name
        self.role = spec.role
        self.pool = pool
        self.time_fn = prefill_time_fn(spec.prefill)
        self.nodes: list[Node] = []
        self.index = ClusterIndex()
        self.dirty: list[Node] = []
        self.state: ClusterState | None = None  # cached view over the index, while unchanged
        self.state_version = -1

    def _flush(self) -> None:
        index = self.index
        for node in self.dirty:
            if node.owner is self:
                index.put(node.view())
        self.dirty.clear()

    def view(self) -> ClusterState:
        """The cluster as a view over its index: valid until the next node change."""
        if self.dirty:
            self._flush()
        state = self.state
        if state is None or self.state_version != self.index.version:
            state = self.state = ClusterState(self.name, self.role, index=self.index)
            self.state_version = self.index.version
        return state

    def snapshot(self) -> ClusterState:
        """The cluster as a self-contained view (a decision hook may keep it)."""
        if self.dirty:
            self._flush()
        return ClusterState(self.name, self.role, self.index.snapshot())

    def add(self, node: Node, index: int | None = None) -> None:
        if index is None:
            self.nodes.append(node)
        else:
            self.nodes[index].owner = None
            self.nodes[index] = node
        node.owner = self
        self.index.put(node.view())
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
