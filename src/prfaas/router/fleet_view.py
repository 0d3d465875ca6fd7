"""The router's routing indexes: a ClusterIndex per cluster, fed by membership changes."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

from prfaas.core.arrivals import ArrivalGaps
from prfaas.core.fleet import ClusterIndex
from prfaas.core.view import CacheMatch, ClusterRole, ClusterState, ClusterView
from prfaas.router.adapter import TransferTelemetry, link_views
from prfaas.router.live_view import membership_record
from prfaas.router.membership import Membership, NodeRecord


class LiveFleet:
    """Per-cluster indexes over the membership; `view` refreshes them, then builds the view.

    A decision costs O(changed nodes x log n) instead of O(n). The views hold exactly the nodes
    and matches router/adapter.py's views hold (a heartbeat within the timeout, alive, with a
    URL), so the policy decides the same; a view reads the live indexes, so it is valid only
    during its decision.
    """

    def __init__(self, members: Membership, block_tokens: int, timeout_s: float) -> None:
        self.members = members
        self.block_tokens = block_tokens
        self.timeout_s = timeout_s
        self.roles: dict[str, ClusterRole] = {
            c.name: c.role  # type: ignore[misc]
            for c in members.cfg.clusters
        }
        self.indexes = {name: ClusterIndex() for name in sorted(self.roles)}
        self._expiry: list[tuple[float, str]] = []  # (last heartbeat, node) of indexed nodes
        self._pushed: dict[str, float] = {}  # the last heartbeat time queued for expiry
        self.arrivals = ArrivalGaps()  # requests' first placements, as the simulator counts
        members.changed.update(members.nodes)

    def refresh(self, now_s: float) -> None:
        """Re-index the nodes that changed; drop those whose heartbeat is now too old."""
        nodes, changed = self.members.nodes, self.members.changed
        while changed:
            rec = nodes.get(changed.pop())
            if rec is not None:
                self._reindex(rec, now_s)
        expiry, cutoff = self._expiry, now_s - self.timeout_s
        while expiry and expiry[0][0] < cutoff:
            last, name = heapq.heappop(expiry)
            rec = nodes[name]
            if rec.last_seen == last:  # no newer heartbeat since: the adapter would skip it
                self.indexes[rec.cluster].remove(name)
                self._pushed.pop(name, None)
                self.members.timed_out.add(name)
            elif self._pushed.get(name) == last:  # newer quiet reports only: re-arm
                self._pushed[name] = rec.last_seen
                heapq.heappush(expiry, (rec.last_seen, name))

    def _reindex(self, rec: NodeRecord, now_s: float) -> None:
        index = self.indexes[rec.cluster]
        if not (rec.alive and rec.url and now_s - rec.last_seen <= self.timeout_s):
            index.remove(rec.name)
            self.members.timed_out.add(rec.name)
            return
        self.members.timed_out.discard(rec.name)
        shared = self.members.replicas > 1
        view = membership_record(rec, self.members.cfg, shared).node_view()
        if index.get(rec.name) != view:  # most reports of an idle node change nothing it routes by
            index.put(view)
        if self._pushed.get(rec.name) != rec.last_seen:
            self._pushed[rec.name] = rec.last_seen
            heapq.heappush(self._expiry, (rec.last_seen, rec.name))

    def view(
        self,
        now_s: float,
        telemetry: Iterable[TransferTelemetry],
        index_match: Mapping[str, int],
        arrival: bool = False,
    ) -> ClusterView:
        """What RouterAdapter.build_view would build from the same state, over the indexes;
        `arrival` counts a request's first placement into the view's arrival CV."""
        self.refresh(now_s)
        if arrival:
            self.arrivals.add(now_s)
        clusters = tuple(
            ClusterState(name, self.roles[name], index=index)
            for name, index in self.indexes.items()
            if len(index)
        )
        matches = self._matches(index_match)
        return ClusterView(now_s, clusters, link_views(telemetry), matches, self.arrivals.cv())

    def _matches(self, index_match: Mapping[str, int]) -> tuple[CacheMatch, ...]:
        out: list[CacheMatch] = []
        nodes = self.members.nodes
        for location, blocks in index_match.items():
            if blocks <= 0:
                continue
            tokens = blocks * self.block_tokens
            index = self.indexes.get(location)
            if index is not None:
                if len(index):
                    out.append(CacheMatch(location, tokens))
                continue
            rec = nodes.get(location)
            if rec is not None and self.indexes[rec.cluster].get(location) is not None:
                out.append(CacheMatch(rec.cluster, tokens, location))
        return tuple(sorted(out, key=lambda m: (m.cluster, m.node or "")))
