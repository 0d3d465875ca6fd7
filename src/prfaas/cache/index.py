"""The global KVCache manager's index: which location (cluster/node) holds which prefix blocks.

Fed only by pool events, so it never reads a pool directly: the simulator wires events in-process,
the live router receives the same events from workers over HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prfaas.cache.pool import CacheEvent


class GlobalPrefixIndex:
    """Block hash -> holders, plus which holders keep a linear-state checkpoint at that block."""

    def __init__(self, needs_state: bool = True) -> None:
        self.needs_state = needs_state
        self._kv: dict[int, set[str]] = {}
        self._state: dict[int, set[str]] = {}

    def apply(self, location: str, event: CacheEvent) -> None:
        if event.kind == "stored":
            self._kv.setdefault(event.block_hash, set()).add(location)
            if event.has_state:
                self._state.setdefault(event.block_hash, set()).add(location)
        else:
            _discard(self._kv, event.block_hash, location)
            _discard(self._state, event.block_hash, location)

    def listener(self, location: str) -> Callable[[CacheEvent], None]:
        """A callback to subscribe to one pool's events."""
        return lambda event: self.apply(location, event)

    def drop_location(self, location: str) -> None:
        """Forget everything a location held (its node left or restarted)."""
        for table in (self._kv, self._state):
            for block_hash in [h for h, holders in table.items() if location in holders]:
                _discard(table, block_hash, location)

    def match(self, hashes: Sequence[int]) -> dict[str, int]:
        """Usable leading blocks per location that holds at least one usable block."""
        best: dict[str, int] = {}
        alive: set[str] | None = None
        for i, block_hash in enumerate(hashes):
            holders = self._kv.get(block_hash)
            if not holders:
                break
            alive = set(holders) if alive is None else alive & holders
            if not alive:
                break
            usable = alive & self._state.get(block_hash, set()) if self.needs_state else alive
            for location in usable:
                best[location] = i + 1
        return best

    def held(self, location: str) -> dict[int, bool]:
        """Every block hash the location holds -> whether it has a state checkpoint there."""
        state = self._state
        return {h: location in state.get(h, ()) for h, holders in self._kv.items()
                if location in holders}

    def blocks_held(self, location: str) -> int:
        return sum(1 for holders in self._kv.values() if location in holders)


def _discard(table: dict[int, set[str]], block_hash: int, location: str) -> None:
    holders = table.get(block_hash)
    if holders is not None:
        holders.discard(location)
        if not holders:
            del table[block_hash]


def best_per_cluster(matches: dict[str, int], cluster_of: Callable[[str], str]) -> dict[str, int]:
    """Collapse per-node matches to the longest match per cluster."""
    out: dict[str, int] = {}
    for location, blocks in matches.items():
        cluster = cluster_of(location)
        out[cluster] = max(out.get(cluster, 0), blocks)
    return out
