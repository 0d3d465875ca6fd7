"""Decode vLLM/SGLang KV-cache events (ZMQ payloads, msgpack) and feed them to a prefix index.

Engines hash blocks with their own seeded hash, so the index keys blocks by prfaas's chained token
hash instead: a `BlockStored` carries its tokens and parent, which is enough to recompute ours and
remember engine hash -> ours for the `BlockRemoved` that names only the engine hash.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from prfaas.cache.hashing import ROOT_HASH, token_block_hashes
from prfaas.cache.pool import CacheEvent

STATE_KINDS = frozenset({"mamba"})  # recurrent-state groups: a checkpoint, not KV


class EventDecodeError(ValueError):
    """A payload that is not a KV event batch."""


@dataclass(frozen=True, slots=True)
class Stored:
    block_hashes: tuple[Any, ...]
    parent_block_hash: Any
    token_ids: tuple[int, ...]
    block_size: int
    group_idx: int | None = None
    kind: str | None = None
    medium: str | None = None


@dataclass(frozen=True, slots=True)
class Removed:
    block_hashes: tuple[Any, ...]
    group_idx: int | None = None
    medium: str | None = None


@dataclass(frozen=True, slots=True)
class Cleared:
    pass


EngineEvent = Stored | Removed | Cleared
# Positional field order of the tagged-array wire form (before vLLM switched to maps).
_STORED_FIELDS = ("block_hashes", "parent_block_hash", "token_ids", "block_size", "lora_id",
                  "medium", "lora_name", "extra_keys", "group_idx", "kv_cache_spec_kind")
_REMOVED_FIELDS = ("block_hashes", "medium", "group_idx")


def _hashable(h: Any) -> Any:
    return bytes(h) if isinstance(h, (bytes, bytearray, memoryview)) else h


def _as_map(raw: Any) -> tuple[str, Mapping[str, Any]]:
    if isinstance(raw, Mapping):
        return str(raw.get("type", "")), raw
    if isinstance(raw, (list, tuple)) and raw:
        tag = str(raw[0])
        names = _STORED_FIELDS if tag == "BlockStored" else _REMOVED_FIELDS
        return tag, dict(zip(names, raw[1:], strict=False))
    raise EventDecodeError(f"not an event: {raw!r:.80}")


def decode_event(raw: Any) -> EngineEvent | None:
    """One event in either wire form (map with "type", or tag-first array); None if unknown."""
    tag, m = _as_map(raw)
    if tag == "BlockStored":
        return Stored(
            tuple(_hashable(h) for h in m["block_hashes"]),
            _hashable(m.get("parent_block_hash")),
            tuple(int(t) for t in m["token_ids"]),
            int(m["block_size"]),
            m.get("group_idx"),
            m.get("kv_cache_spec_kind"),
            m.get("medium"),
        )
    if tag == "BlockRemoved":
        return Removed(tuple(_hashable(h) for h in m["block_hashes"]), m.get("group_idx"),
                       m.get("medium"))
    if tag == "AllBlocksCleared":
        return Cleared()
    return None


def decode_batch(payload: bytes) -> tuple[float, list[EngineEvent]]:
    """A msgpack `[ts, events, dp_rank]` batch -> (ts, decoded events, unknown ones skipped)."""
    try:
        batch = msgspec.msgpack.decode(payload)
    except msgspec.DecodeError as exc:
        raise EventDecodeError(f"not msgpack: {exc}") from None
    if not isinstance(batch, (list, tuple)) or len(batch) < 2:
        raise EventDecodeError("an event batch is an array [ts, events, dp_rank]")
    events = [e for e in (decode_event(raw) for raw in batch[1]) if e is not None]
    return float(batch[0]), events


class EventFedIndex:
    """Turns one engine's events into `CacheEvent`s keyed by prfaas's token-chained hashes."""

    def __init__(
        self, location: str, sink: Callable[[str, CacheEvent], None], block_tokens: int = 0
    ) -> None:
        self.location = location
        self.sink = sink
        self.block_tokens = block_tokens  # the router's block size; 0 = take what events say
        self._ours: dict[tuple[int | None, Any], int] = {}  # (group, engine hash) -> our hash
        self._chain: dict[Any, int] = {}  # engine hash -> our hash, any group (parent lookups)

    def apply(self, events: Sequence[EngineEvent]) -> None:
        for ev in events:
            if isinstance(ev, Stored):
                self._stored(ev)
            elif isinstance(ev, Removed):
                for h in ev.block_hashes:
                    ours = self._ours.pop((ev.group_idx, h), None)
                    if ours is not None:
                        self.sink(self.location, CacheEvent("evicted", ours, False))
            else:
                for (_, _h), ours in list(self._ours.items()):
                    self.sink(self.location, CacheEvent("evicted", ours, False))
                self._ours.clear()
                self._chain.clear()

    def _stored(self, ev: Stored) -> None:
        if ev.medium not in (None, "GPU"):
            return  # offloaded tiers are not what the engine's prefix cache serves directly
        ph = ev.parent_block_hash
        parent = ROOT_HASH if ph is None else self._chain.get(ph)
        if parent is None:
            return  # its prefix was never seen (joined mid-stream): unusable as a prefix anyway
        if self.block_tokens and ev.block_size != self.block_tokens:
            return  # a partial tail block: the router never hashes one
        ours = token_block_hashes(ev.token_ids, ev.block_size, parent)
        is_state = ev.kind in STATE_KINDS
        for engine_hash, h in zip(ev.block_hashes, ours, strict=False):
            self._ours[(ev.group_idx, engine_hash)] = h
            self._chain[engine_hash] = h
            if not is_state:
                self.sink(self.location, CacheEvent("stored", h, False))

    def known(self) -> Iterator[int]:
        return iter(set(self._ours.values()))
