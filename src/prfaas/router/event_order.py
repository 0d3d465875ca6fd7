"""Per-node ordering of cache events, in bounded memory (the newest sequence number per block).

Events reach the router on two channels (heartbeats, prefill replies) and a failed heartbeat
resends its events later, so a block's events may arrive out of order: an event older than the
newest one applied for its block is dropped. Remembering a number for every block ever evicted
would grow with traffic; past `limit` evicted entries the oldest half is forgotten and `floor`
(the newest number forgotten) drops anything that old: such an event is thousands of events late.
"""

from __future__ import annotations

DEFAULT_LIMIT = 4096  # evictions remembered per node: minutes of events at the paper's load


class EventOrder:
    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self.floor = 0
        self._seq: dict[int, int] = {}  # block -> newest seq applied (negative: an eviction)
        self._evicted = 0

    def __len__(self) -> int:
        return len(self._seq)

    def fresh(self, seq: int, block_hash: int, stored: bool) -> bool:
        """Record the event and say whether to apply it (False: stale)."""
        last = self._seq.get(block_hash)
        if seq <= self.floor or (last is not None and seq <= abs(last)):
            return False
        if last is not None and last < 0:
            self._evicted -= 1
        self._seq[block_hash] = seq if stored else -seq
        if not stored:
            self._evicted += 1
            if self._evicted > self.limit:
                self._forget_oldest_evictions()
        return True

    def _forget_oldest_evictions(self) -> None:
        evicted = sorted((-s, h) for h, s in self._seq.items() if s < 0)
        for seq, block_hash in evicted[: len(evicted) // 2]:
            del self._seq[block_hash]
            self.floor = max(self.floor, seq)
        self._evicted = len(evicted) - len(evicted) // 2
