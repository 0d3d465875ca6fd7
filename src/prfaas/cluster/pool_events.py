"""A prfaas prefix pool's changes as vLLM KV events, and back (what workers publish, routers read).

prfaas block hashes are already the router's index keys, so they travel as vLLM's integer
`block_hashes` (no token ids are needed to recompute them). A block that also holds a
linear-state checkpoint (hybrid models) is announced twice, as vLLM does for a hybrid model's
two KV-cache groups: once in the attention group, once in a `mamba` state group.
"""

from __future__ import annotations

from collections.abc import Sequence

from prfaas.cache.events import STATE_KINDS, Cleared, Removed, Stored, decode_batch
from prfaas.cache.pool import CacheEvent
from prfaas.cluster.kv_events import AllBlocksCleared, BlockRemoved, BlockStored, KvEvent

MEDIUM = "GPU"
STATE_GROUP = 1


def _stored(hashes: list[int | bytes], block_size: int, state: bool) -> list[KvEvent]:
    kv = BlockStored(hashes, None, [], block_size, None, MEDIUM, None, group_idx=0)
    if not state:
        return [kv]
    return [kv, BlockStored(hashes, None, [], block_size, None, MEDIUM, None,
                            group_idx=STATE_GROUP, kv_cache_spec_kind="mamba")]


def to_vllm(events: Sequence[CacheEvent], block_size: int) -> list[KvEvent]:
    """Runs of same-kind events become one BlockStored / BlockRemoved each, in order."""
    out: list[KvEvent] = []
    run: list[int | bytes] = []
    key: tuple[str, bool] | None = None
    for ev in [*events, None]:
        k = (ev.kind, ev.has_state) if ev is not None else None
        if k != key and run and key is not None:
            kind, state = key
            out.extend(_stored(run, block_size, state) if kind == "stored"
                       else [BlockRemoved(run, MEDIUM)])
            run = []
        if ev is not None:
            key = k
            run.append(ev.block_hash)
    return out


def from_vllm(payload: bytes) -> list[CacheEvent | None]:
    """A batch (either vLLM wire form) -> pool events; None stands for AllBlocksCleared.
    Raises cache.events.EventDecodeError on a malformed batch."""
    _, events = decode_batch(payload)
    out: list[CacheEvent | None] = []
    for ev in events:
        if isinstance(ev, Cleared):
            out.append(None)
        elif isinstance(ev, Stored):
            state = ev.kind in STATE_KINDS
            out.extend(CacheEvent("stored", int(h), state) for h in ev.block_hashes)
        elif isinstance(ev, Removed):
            out.extend(CacheEvent("evicted", int(h), False) for h in ev.block_hashes)
    return out


CLEARED: list[KvEvent] = [AllBlocksCleared()]
