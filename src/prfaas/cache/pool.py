"""The hybrid prefix-cache pool (paper §3.2): one byte budget shared by KV blocks and linear states.

Full-attention KV is block-level and matches by prefix; a linear-attention (or SWA) state is
request-level and reusable only at the exact length it was checkpointed at, i.e. at the end of a
block that carries a state checkpoint. Payloads are opaque: tensors in the engine, None in the
simulator, so both run this same matching and eviction code.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

EventKind = Literal["stored", "evicted"]


@dataclass(frozen=True, slots=True)
class CacheEvent:
    """A block entered or left a pool; a global index subscribes to these."""

    kind: EventKind
    block_hash: int
    has_state: bool


@dataclass(frozen=True, slots=True)
class PrefixMatch:
    """How much of a request's prefix a pool can serve."""

    kv_blocks: int  # leading blocks whose full-attention KV is present
    usable_blocks: int  # leading blocks reusable as a whole: KV + a state at the boundary
    block_tokens: int

    @property
    def usable_tokens(self) -> int:
        return self.usable_blocks * self.block_tokens


@dataclass(frozen=True, slots=True)
class PoolStats:
    """Counters since construction; hit rate is by tokens, the unit prefill cost scales with."""

    queries: int
    hits: int
    misses: int
    query_tokens: int
    hit_tokens: int
    stored_blocks: int
    evicted_blocks: int
    used_bytes: int
    capacity_bytes: int

    @property
    def token_hit_rate(self) -> float:
        return self.hit_tokens / self.query_tokens if self.query_tokens else 0.0


class _Entry:
    __slots__ = ("has_state", "kv", "nbytes", "state")

    def __init__(self, kv: object, nbytes: int) -> None:
        self.kv = kv
        self.state: object = None
        self.has_state = False
        self.nbytes = nbytes


class HybridPrefixPool:
    """Prefix-cache blocks (LRU, evictable) plus transfer-cache reservations (pinned)."""

    def __init__(
        self,
        capacity_bytes: int,
        block_tokens: int,
        kv_bytes_per_token: int,
        state_bytes: int,
        on_event: Callable[[CacheEvent], None] | None = None,
    ) -> None:
        if capacity_bytes < 0 or block_tokens <= 0 or kv_bytes_per_token < 0 or state_bytes < 0:
            raise ValueError("pool sizes must be non-negative and block_tokens positive")
        self.capacity_bytes = capacity_bytes
        self.block_tokens = block_tokens
        self.block_kv_bytes = block_tokens * kv_bytes_per_token
        self.state_bytes = state_bytes
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._transfers: dict[str, int] = {}
        self._used = 0
        self._listeners: list[Callable[[CacheEvent], None]] = [on_event] if on_event else []
        self._queries = self._hits = self._query_tokens = self._hit_tokens = 0
        self._stored = self._evicted = 0

    # -- queries ---------------------------------------------------------------------------
    def contents(self) -> dict[int, bool]:
        """Every held block hash -> whether it holds a linear-state checkpoint (for checks that
        an index fed by this pool's events agrees with it)."""
        return {h: e.has_state for h, e in self._entries.items()}

    def peek(self, hashes: Sequence[int]) -> PrefixMatch:
        """The match, without touching LRU order or counters (for what-if routing queries)."""
        entries = self._entries
        kv_blocks = 0
        usable = 0
        needs_state = self.state_bytes > 0
        for h in hashes:
            entry = entries.get(h)
            if entry is None:
                break
            kv_blocks += 1
            if not needs_state or entry.has_state:
                usable = kv_blocks
        return PrefixMatch(kv_blocks, usable, self.block_tokens)

    def match(self, hashes: Sequence[int]) -> PrefixMatch:
        """The match for a request about to run: counts hit/miss and refreshes the used blocks."""
        result = self.peek(hashes)
        self._queries += 1
        self._query_tokens += len(hashes) * self.block_tokens
        self._hit_tokens += result.usable_tokens
        if result.usable_blocks:
            self._hits += 1
            self._touch(hashes[: result.usable_blocks])
        return result

    def lookup(self, hashes: Sequence[int], n_blocks: int) -> tuple[list[object], object]:
        """Payloads of the first `n_blocks` blocks and the state checkpoint at their end."""
        if n_blocks <= 0:
            return [], None
        try:
            chain = [self._entries[h] for h in hashes[:n_blocks]]
        except KeyError as exc:
            raise KeyError(f"block {exc.args[0]:#x} is not in the pool") from None
        if len(chain) < n_blocks:
            raise KeyError(f"only {len(chain)} hashes given for {n_blocks} blocks")
        if self.state_bytes > 0 and not chain[-1].has_state:
            raise KeyError("no linear-state checkpoint at this length: states match only exactly")
        return [e.kv for e in chain], chain[-1].state

    # -- mutation --------------------------------------------------------------------------
    def insert(
        self,
        hashes: Sequence[int],
        kv_payloads: Sequence[object] | None = None,
        state_payloads: Mapping[int, object] | None = None,
    ) -> int:
        """Store full blocks (and state checkpoints at given block indices); returns blocks kept.

        Stops at the first block that cannot fit: a suffix without its prefix is unreachable.
        """
        if kv_payloads is not None and len(kv_payloads) != len(hashes):
            raise ValueError("kv_payloads must have one payload per block hash")
        states = state_payloads or {}
        kept = 0
        for i, h in enumerate(hashes):
            entry = self._entries.get(h)
            if entry is None:
                entry = _Entry(kv_payloads[i] if kv_payloads is not None else None, 0)
                if not self._make_room(self.block_kv_bytes):
                    break
                entry.nbytes = self.block_kv_bytes
                self._used += entry.nbytes
                self._entries[h] = entry
                self._stored += 1
                fresh = True
            else:
                fresh = False
            gained_state = i in states and not entry.has_state
            if gained_state:
                self._add_state(h, entry, states[i])
            if fresh or (gained_state and entry.has_state):
                self._emit(CacheEvent("stored", h, entry.has_state))
            kept += 1
        self._touch(hashes[:kept])
        return kept

    def _add_state(self, block_hash: int, entry: _Entry, payload: object) -> None:
        # Keep the entry from being evicted while room is made for its own state.
        self._entries.move_to_end(block_hash)
        if self.state_bytes and not self._make_room(self.state_bytes, protect=block_hash):
            return
        entry.state = payload
        entry.has_state = True
        entry.nbytes += self.state_bytes
        self._used += self.state_bytes

    def reserve_transfer(self, request_id: str, nbytes: int) -> bool:
        """Pin transfer-cache bytes for an in-flight KV tail; evicts prefix blocks if needed."""
        if nbytes < 0:
            raise ValueError("nbytes must be non-negative")
        if request_id in self._transfers:
            raise ValueError(f"transfer {request_id!r} already holds a reservation")
        if not self._make_room(nbytes):
            return False
        self._transfers[request_id] = nbytes
        self._used += nbytes
        return True

    def release_transfer(self, request_id: str) -> None:
        """Free a transfer reservation once the transfer has completed (or failed)."""
        self._used -= self._transfers.pop(request_id, 0)

    def subscribe(self, listener: Callable[[CacheEvent], None]) -> None:
        self._listeners.append(listener)

    # -- internals -------------------------------------------------------------------------
    def _touch(self, hashes: Sequence[int]) -> None:
        # Refresh tail-first so a chain's root ends up most recent: eviction then trims
        # chains from their ends, never orphaning a still-cached suffix behind a lost root.
        entries = self._entries
        for h in reversed(hashes):
            if h in entries:
                entries.move_to_end(h)

    def _make_room(self, nbytes: int, protect: int | None = None) -> bool:
        if nbytes > self.capacity_bytes - sum(self._transfers.values()):
            return False
        while self._used + nbytes > self.capacity_bytes:
            victim = next(iter(self._entries), None)
            if victim is None or victim == protect:
                return False
            self._evict(victim)
        return True

    def evict_all(self) -> int:
        """Drop every prefix block (transfer reservations stay); returns how many went."""
        n = len(self._entries)
        for block_hash in list(self._entries):
            self._evict(block_hash)
        return n

    def _evict(self, block_hash: int) -> None:
        entry = self._entries.pop(block_hash)
        self._used -= entry.nbytes
        self._evicted += 1
        self._emit(CacheEvent("evicted", block_hash, entry.has_state))

    def _emit(self, event: CacheEvent) -> None:
        for listener in self._listeners:
            listener(event)

    # -- introspection -----------------------------------------------------------------------
    @property
    def used_bytes(self) -> int:
        return self._used

    @property
    def free_bytes(self) -> int:
        return self.capacity_bytes - self._used

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, block_hash: object) -> bool:
        return block_hash in self._entries

    def stats(self) -> PoolStats:
        return PoolStats(
            queries=self._queries,
            hits=self._hits,
            misses=self._queries - self._hits,
            query_tokens=self._query_tokens,
            hit_tokens=self._hit_tokens,
            stored_blocks=self._stored,
            evicted_blocks=self._evicted,
            used_bytes=self._used,
            capacity_bytes=self.capacity_bytes,
        )
