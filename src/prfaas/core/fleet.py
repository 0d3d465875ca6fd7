"""Incremental node rankings of one cluster: updates and routing queries in O(log n), not O(n)."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import TypeVar

from prfaas.core.ties import TIE_GROUP, pick
from prfaas.core.view import NodeView, decode_load

PrefillKey = tuple[int, str]  # (queued tokens, node id)
DecodeKey = tuple[float, int, str]  # (load per slot, -free KV bytes, node id)
K = TypeVar("K", PrefillKey, DecodeKey)


class ClusterIndex:
    """One cluster's nodes by id (insertion order) with lazy min-heaps over the active ones.

    A driver (simulator or router) `put`s a node's new NodeView whenever that node changes; the
    policy asks for the least-work prefill node or the soonest decode node instead of scanning.
    Answers equal exhaustive scans (ClusterState's scan path, the pre-index code kept in
    tests/test_fleet_index.py): same keys, same tie-break on node id. Heaps hold stale entries
    lazily: an entry is live only while it is the node's current one.
    """

    __slots__ = (
        "_decode",
        "_decode_key",
        "_idle_count",
        "_nodes",
        "_prefill",
        "_prefill_key",
        "_queue_count",
        "_queue_sum",
        "_ready",
        "_ready_key",
        "_snapshot",
        "version",
    )

    def __init__(self, nodes: tuple[NodeView, ...] = ()) -> None:
        self._nodes: dict[str, NodeView] = {}
        self._prefill: list[PrefillKey] = []
        self._prefill_key: dict[str, PrefillKey] = {}
        self._decode: list[DecodeKey] = []
        self._decode_key: dict[str, DecodeKey] = {}
        # Decode nodes with nothing waiting and a free slot: only these can fit a request now.
        self._ready: list[DecodeKey] = []
        self._ready_key: dict[str, DecodeKey] = {}
        self._queue_sum = 0  # waiting requests over active prefill nodes
        self._queue_count = 0  # active prefill nodes
        self._idle_count = 0  # active prefill nodes with no queued tokens
        self._snapshot: tuple[NodeView, ...] | None = ()
        self.version = 0  # bumped on every change: a view built on this index checks it
        for node in nodes:
            self.put(node)

    # -- updates ---------------------------------------------------------------------------
    def put(self, node: NodeView) -> None:
        """Add a node or replace its previous view."""
        old = self._nodes.get(node.node_id)
        if old is not None:
            self._forget(old)
        self._nodes[node.node_id] = node
        self.version += 1
        self._snapshot = None
        if node.draining:
            return
        if node.role == "prefill":
            pk = (node.queued_tokens, node.node_id)
            self._prefill_key[node.node_id] = pk
            heapq.heappush(self._prefill, pk)
            self._queue_sum += node.queue_len
            self._queue_count += 1
            self._idle_count += node.queued_tokens == 0
        else:
            dk = (decode_load(node), -node.free_kv_bytes, node.node_id)
            self._decode_key[node.node_id] = dk
            heapq.heappush(self._decode, dk)
            if node.queue_len == 0 and node.running < node.max_batch:
                self._ready_key[node.node_id] = dk
                heapq.heappush(self._ready, dk)
        if len(self._prefill) + len(self._decode) + len(self._ready) > 3 * len(self._nodes) + 192:
            self._compact()

    def remove(self, node_id: str) -> None:
        """Drop a node (it left the cluster or stopped answering)."""
        old = self._nodes.pop(node_id, None)
        if old is not None:
            self._forget(old)
            self.version += 1
            self._snapshot = None

    def _forget(self, old: NodeView) -> None:
        if self._prefill_key.pop(old.node_id, None) is not None:
            self._queue_sum -= old.queue_len
            self._queue_count -= 1
            self._idle_count -= old.queued_tokens == 0
        self._decode_key.pop(old.node_id, None)
        self._ready_key.pop(old.node_id, None)

    def _compact(self) -> None:
        """Rebuild a heap once stale entries outnumber live ones (amortised O(1) per update)."""
        if len(self._prefill) > 2 * len(self._prefill_key) + 64:
            self._prefill = list(self._prefill_key.values())
            heapq.heapify(self._prefill)
        if len(self._decode) > 2 * len(self._decode_key) + 64:
            self._decode = list(self._decode_key.values())
            heapq.heapify(self._decode)
        if len(self._ready) > 2 * len(self._ready_key) + 64:
            self._ready = list(self._ready_key.values())
            heapq.heapify(self._ready)

    # -- queries ---------------------------------------------------------------------------
    def snapshot(self) -> tuple[NodeView, ...]:
        """Every node, in the order first added (O(n), cached until the next change)."""
        snap = self._snapshot
        if snap is None:
            snap = self._snapshot = tuple(self._nodes.values())
        return snap

    def get(self, node_id: str) -> NodeView | None:
        return self._nodes.get(node_id)

    def __len__(self) -> int:
        return len(self._nodes)

    def least_work_prefill(self, seed: int = 0) -> NodeView | None:
        """The active prefill node with the fewest queued tokens; ties as soonest_decode's."""
        tied = self._tied(self._prefill, self._prefill_key)
        return pick((self._nodes[k[-1]] for k in tied), seed) if tied else None

    def prefill_queue(self) -> tuple[int, int]:
        """(waiting requests summed over active prefill nodes, number of those nodes)."""
        return self._queue_sum, self._queue_count

    def idle_prefill(self) -> int:
        """Active prefill nodes with no queued tokens."""
        return self._idle_count

    def soonest_decode(self, kv_bytes: int, seed: int = 0) -> NodeView | None:
        """The decode node policy/select.best_decode would pick in this cluster.

        Among those that fit now (nothing waiting, a free slot, the memory), the lowest
        (load, -free); if none fits, the lowest of all. Equal ranks: the first TIE_GROUP by id,
        of which the request's seed prefers one (core/ties.py).
        """
        tied = self._tied(self._ready, self._ready_key, lambda key: -key[1] >= kv_bytes)
        if not tied:
            tied = self._tied(self._decode, self._decode_key)
        return pick((self._nodes[k[-1]] for k in tied), seed) if tied else None

    @staticmethod
    def _tied(
        heap: list[K], live: dict[str, K], usable: Callable[[K], bool] = lambda _: True
    ) -> list[K]:
        """The heap's first usable entries of the lowest rank (all but the id), at most
        TIE_GROUP of them; the heap is left as it was (O(k log n))."""
        popped: list[K] = []
        tied: list[K] = []
        while heap and len(tied) < TIE_GROUP:
            top = heap[0]
            if live.get(top[-1]) is not top:
                heapq.heappop(heap)  # stale
                continue
            if tied and top[:-1] != tied[0][:-1]:
                break
            popped.append(heapq.heappop(heap))
            if usable(top):  # else, e.g. ready but short of memory: look further
                tied.append(top)
        for key in popped:
            heapq.heappush(heap, key)
        return tied
