"""Read, build, slice and batch transformers 5.x hybrid caches as plain per-layer tensors.

Relies on transformers 5.24 internals (DynamicLayer keys/values, LinearAttentionLayer conv and
recurrent states); the project pins that version, and the engine tests cover every path here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import (
    DynamicLayer,
    DynamicSlidingWindowLayer,
    LinearAttentionAndFullAttentionLayer,
    LinearAttentionLayer,
)

from prfaas.model.engine.errors import StateMismatchError, UnsupportedModelError

ATTENTION, LINEAR = "attention", "linear"
KV_NAMES = ("keys", "values")
STATE_NAMES = ("conv", "recurrent")


@dataclass(frozen=True, slots=True)
class LayerState:
    """One layer's cache for one request: KV `[1, H, T, D]` or a linear state at `num_tokens`."""

    index: int
    kind: str  # ATTENTION | LINEAR
    num_tokens: int  # tokens this KV holds / the exact length this linear state summarises
    tensors: Mapping[str, torch.Tensor]
    conv_kernel_size: int = 0

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())


def _layers(cache: DynamicCache) -> list[Any]:
    # transformers types these as a union of mixins; we dispatch on the concrete class.
    return list(cache.layers)


def layer_kinds(config: Any) -> list[str]:
    """ATTENTION or LINEAR per layer, from the cache layout transformers builds for `config`."""
    return [_kind(layer) for layer in DynamicCache(config=config).layers]


def _kind(layer: object) -> str:
    # Hybrid and sliding layers hold state that is neither sliceable KV nor a plain linear state.
    if isinstance(layer, LinearAttentionAndFullAttentionLayer | DynamicSlidingWindowLayer):
        raise UnsupportedModelError(f"cache layer {type(layer).__name__} is not supported yet")
    if isinstance(layer, LinearAttentionLayer):
        if layer.number_of_states != 1:
            raise UnsupportedModelError("linear layers with several states are not supported")
        return LINEAR
    if isinstance(layer, DynamicLayer):
        return ATTENTION
    raise UnsupportedModelError(f"cache layer {type(layer).__name__} is not supported")


def export_layer(cache: DynamicCache, index: int, num_tokens: int) -> LayerState:
    """The layer's tensors: KV by reference (transformers never mutates them, it concatenates),
    linear states cloned (transformers updates those in place on the next forward)."""
    layer = _layers(cache)[index]
    if _kind(layer) == ATTENTION:
        if not layer.is_initialized or layer.keys is None:
            raise StateMismatchError(f"layer {index} holds no KV yet")
        return LayerState(
            index,
            ATTENTION,
            int(layer.keys.shape[-2]),
            {"keys": layer.keys, "values": layer.values},
        )
    if not layer.has_previous_state[0]:
        raise StateMismatchError(f"layer {index} holds no linear state yet")
    tensors = {
        "conv": _conv_tail(layer.conv_states[0]),
        "recurrent": layer.recurrent_states[0].clone(),
    }
    return LayerState(index, LINEAR, num_tokens, tensors, int(layer.conv_kernel_size[0]))


def _conv_tail(conv: torch.Tensor) -> torch.Tensor:
    """The last kernel-1 conv inputs, the only ones a later step reads.

    transformers keeps `kernel` columns, but its causal conv (prefill continuation and decode
    update alike) never reads the oldest one; dropping it matches vLLM's (kernel-1) layout.
    """
    return conv[..., 1:].clone()


def export_layers(cache: DynamicCache, num_tokens: int) -> list[LayerState]:
    return [export_layer(cache, i, num_tokens) for i in range(len(cache.layers))]


def build_cache(config: Any, layers: Sequence[LayerState], num_tokens: int) -> DynamicCache:
    """A fresh DynamicCache holding `layers`, every one of which must be at exactly `num_tokens`."""
    cache = DynamicCache(config=config)
    if len(layers) != len(cache.layers):
        raise StateMismatchError(f"cache has {len(layers)} layers, the model {len(cache.layers)}")
    for target, state in zip(cache.layers, layers, strict=True):
        if _kind(target) != state.kind:
            raise StateMismatchError(f"layer {state.index} is {_kind(target)}, got {state.kind}")
        if state.num_tokens != num_tokens:
            raise StateMismatchError(
                f"layer {state.index} ({state.kind}) is at {state.num_tokens} tokens, "
                f"not {num_tokens}: a linear state is only reusable at its exact length"
            )
        _fill(target, state)
    return cache


def _fill(target: Any, state: LayerState) -> None:
    t = state.tensors
    if state.kind == ATTENTION:
        DynamicLayer.lazy_initialization(target, t["keys"], t["values"])
        target.keys, target.values = t["keys"], t["values"]
        return
    conv, kernel = t["conv"], state.conv_kernel_size
    if conv.shape[-1] != kernel - 1:
        raise StateMismatchError(
            f"layer {state.index} conv state has {conv.shape[-1]} columns, "
            f"expected kernel-1 = {kernel - 1}"
        )
    target.lazy_initialization(conv_states=conv, conv_kernel_size=kernel)
    target.conv_states[0][..., 1:].copy_(conv)  # the oldest column is never read: leave it 0
    target.lazy_initialization(recurrent_states=t["recurrent"])
    target.recurrent_states[0].copy_(t["recurrent"])
    target.has_previous_state[0] = True


def slice_prefix(layers: Sequence[LayerState], num_tokens: int) -> list[LayerState]:
    """KV cut to the first `num_tokens`; linear states must already be at exactly that length."""
    out = []
    for s in layers:
        if s.kind == ATTENTION:
            if s.num_tokens < num_tokens:
                raise StateMismatchError(
                    f"layer {s.index} has {s.num_tokens} < {num_tokens} tokens"
                )
            kv = {n: s.tensors[n][:, :, :num_tokens] for n in KV_NAMES}
            out.append(LayerState(s.index, ATTENTION, num_tokens, kv))
        elif s.num_tokens != num_tokens:
            raise StateMismatchError(
                f"layer {s.index} linear state is at {s.num_tokens} tokens, not {num_tokens}"
            )
        else:
            out.append(s)
    return out


def cache_nbytes(cache: DynamicCache) -> int:
    """Bytes the cache holds right now (KV plus linear states)."""
    total = 0
    for layer in _layers(cache):
        if _kind(layer) == ATTENTION:
            if layer.is_initialized and layer.keys is not None:
                total += sum(t.numel() * t.element_size() for t in (layer.keys, layer.values))
        else:
            for store in (layer.conv_states, layer.recurrent_states):
                if store[0] is not None:
                    total += store[0].numel() * store[0].element_size()
    return total


def merge_for_batch(
    config: Any, per_seq: Sequence[Sequence[LayerState]], lengths: Sequence[int]
) -> tuple[DynamicCache, torch.Tensor]:
    """One batched cache, KV left-padded to the longest sequence, plus the [B, T] padding mask."""
    longest = max(lengths)
    cache = DynamicCache(config=config)
    for i, target in enumerate(cache.layers):
        states = [seq[i] for seq in per_seq]
        if states[0].kind == ATTENTION:
            kv = {
                n: torch.cat(
                    [F.pad(s.tensors[n], (0, 0, longest - s.num_tokens, 0)) for s in states]
                )
                for n in KV_NAMES
            }
            _fill(target, LayerState(i, ATTENTION, longest, kv))
        else:
            st = {n: torch.cat([s.tensors[n] for s in states]) for n in STATE_NAMES}
            _fill(target, LayerState(i, LINEAR, longest, st, states[0].conv_kernel_size))
    mask = torch.zeros(len(lengths), longest, dtype=torch.long)
    for b, n in enumerate(lengths):
        mask[b, longest - n :] = 1
    return cache, mask


def split_batch(cache: DynamicCache, lengths: Sequence[int]) -> list[list[LayerState]]:
    """Per-sequence layer states out of a left-padded batched cache (inverse of merge_for_batch)."""
    out: list[list[LayerState]] = [[] for _ in lengths]
    for i, layer in enumerate(_layers(cache)):
        for b, n in enumerate(lengths):
            if _kind(layer) == ATTENTION:
                kv = {
                    "keys": layer.keys[b : b + 1, :, -n:],
                    "values": layer.values[b : b + 1, :, -n:],
                }
                out[b].append(LayerState(i, ATTENTION, n, kv))
            else:
                st = {
                    "conv": _conv_tail(layer.conv_states[0][b : b + 1]),
                    "recurrent": layer.recurrent_states[0][b : b + 1].clone(),
                }
                out[b].append(LayerState(i, LINEAR, n, st, int(layer.conv_kernel_size[0])))
    return out
