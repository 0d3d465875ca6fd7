"""Engine side of the hybrid prefix-cache pool: per-block KV slices and block-boundary states.

The pool (prfaas.cache.pool) does the matching, LRU and byte accounting on opaque payloads; this
helper decides what the payloads are: per block, every attention layer's KV slice (owned
copies); per state checkpoint, every linear layer's state at exactly that block boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import torch

from prfaas.cache.hashing import token_block_hashes
from prfaas.cache.pool import CacheEvent, HybridPrefixPool, PrefixMatch
from prfaas.model.engine.cache_ops import ATTENTION, LINEAR, LayerState
from prfaas.model.engine.engine import Engine, PrefillResult, RequestCache
from prfaas.model.engine.errors import EngineInputError

BlockKV = tuple[tuple[torch.Tensor, torch.Tensor], ...]  # (keys, values) per attention layer


class EnginePrefixCache:
    """Prefill through a prefix pool: resume from the longest usable match, store what's new."""

    def __init__(
        self,
        engine: Engine,
        capacity_bytes: int,
        *,
        block_tokens: int = 64,
        checkpoint_every_blocks: int = 4,
        on_event: Callable[[CacheEvent], None] | None = None,
    ) -> None:
        if block_tokens < 1 or checkpoint_every_blocks < 1:
            raise EngineInputError("block_tokens and checkpoint_every_blocks must be positive")
        spec = engine.state_spec
        self.engine = engine
        self.block_tokens = block_tokens
        self.checkpoint_every_blocks = checkpoint_every_blocks
        self.pool = HybridPrefixPool(
            capacity_bytes, block_tokens, spec.bytes_per_token, spec.fixed_bytes, on_event
        )
        self._attn = [i for i, k in enumerate(engine.layer_kinds) if k == ATTENTION]

    def hashes(self, token_ids: Sequence[int]) -> list[int]:
        return token_block_hashes(token_ids, self.block_tokens)

    def match(self, token_ids: Sequence[int]) -> PrefixMatch:
        """What a prefill of `token_ids` would reuse (no LRU or counter side effects)."""
        return self.pool.peek(self._resumable(self.hashes(token_ids), len(token_ids)))

    def _resumable(self, hashes: list[int], num_tokens: int) -> list[int]:
        # At least one prompt token must be computed to get logits, so a match may cover
        # at most the blocks ending before the last token.
        return hashes[: (num_tokens - 1) // self.block_tokens]

    def prefill(self, token_ids: Sequence[int], **kwargs: Any) -> PrefillResult:
        """engine.prefill resumed from the pool, checkpointing states at block boundaries."""
        ids = self.engine.check_prompt(token_ids)
        hashes = self.hashes(ids)
        match = self.pool.match(self._resumable(hashes, len(ids)))
        blocks = match.usable_blocks
        prefix = (
            self.load_prefix(hashes, blocks, ids[: blocks * self.block_tokens]) if blocks else None
        )
        every = self.checkpoint_every_blocks
        checkpoint_at = [
            (b + 1) * self.block_tokens
            for b in range(match.usable_blocks, len(hashes))
            if (b + 1) % every == 0 or b == len(hashes) - 1
        ]
        result = self.engine.prefill(
            ids, cache_prefix=prefix, checkpoint_at=checkpoint_at, **kwargs
        )
        self.store(hashes, result)
        return result

    def load_prefix(
        self, hashes: Sequence[int], blocks: int, token_ids: Sequence[int] | None = None
    ) -> RequestCache:
        """The cache of the first `blocks` blocks: KV concatenated, linear states at their end
        (KeyError from the pool if that boundary has no state checkpoint)."""
        kv_payloads, state = self.pool.lookup(hashes, blocks)
        n = blocks * self.block_tokens
        states = cast(tuple[LayerState, ...], state or ())
        linear = {s.index: s for s in states}
        layers: list[LayerState] = []
        for i, kind in enumerate(self.engine.layer_kinds):
            if kind == LINEAR:
                layers.append(linear[i])  # KeyError would mean a pool bug: states are all-or-none
                continue
            slot = self._attn.index(i)
            parts = [blk[slot] for blk in kv_payloads]  # type: ignore[index]
            kv = {
                "keys": torch.cat([p[0] for p in parts], dim=2),
                "values": torch.cat([p[1] for p in parts], dim=2),
            }
            layers.append(LayerState(i, ATTENTION, n, kv))
        return RequestCache(tuple(layers), n, tuple(token_ids) if token_ids is not None else None)

    def store(self, hashes: list[int], result: PrefillResult) -> int:
        """Insert the request's full blocks and its checkpoints; returns blocks kept."""
        b = self.block_tokens
        by_layer = {s.index: s for s in result.cache.layers}
        kv: list[object] = []
        for i, h in enumerate(hashes):
            if h in self.pool:
                kv.append(None)  # already cached: the pool keeps its own payload
                continue
            kv.append(
                tuple(
                    (
                        by_layer[j].tensors["keys"][:, :, i * b : (i + 1) * b].clone(),
                        by_layer[j].tensors["values"][:, :, i * b : (i + 1) * b].clone(),
                    )
                    for j in self._attn
                )
            )
        states = {pos // b - 1: st for pos, st in result.checkpoints.items() if pos % b == 0}
        return self.pool.insert(hashes, kv, states)

    def reserve_transfer(self, request_id: str, result: PrefillResult) -> bool:
        """Pin pool bytes for what the prefix blocks do not hold: the unaligned tail + the state."""
        spec = self.engine.state_spec
        tail = result.cache.num_tokens % self.block_tokens
        return self.pool.reserve_transfer(
            request_id, tail * spec.bytes_per_token + spec.fixed_bytes
        )

    def release_transfer(self, request_id: str) -> None:
        self.pool.release_transfer(request_id)
