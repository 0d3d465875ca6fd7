"""A request's cache from two sources: a held prefix's KV and the prefill's messages for the rest.

An offloaded prefill whose decode cluster already holds the prompt's first `held` tokens sends
each attention layer's KV for tokens [held, n) only (a message of n - held tokens) and every
linear state whole (at n); the decode node gets the prefix from a holder in its own cluster as one
message of all layers at the prefix's length, and joins them here (paper §3.3).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch

from prfaas.model.engine.cache_ops import ATTENTION, LayerState
from prfaas.model.engine.errors import WireFormatError
from prfaas.model.engine.wire import decode_layers

if TYPE_CHECKING:
    from prfaas.model.engine.engine import Engine, RequestCache


def splice(
    engine: Engine, prefix: Any, tail: Iterable[Any], held: int, num_tokens: int
) -> RequestCache:
    """The whole cache: the prefix message's KV for tokens [0, held) before each tail layer's KV,
    the tail's linear states as they are. Every length is checked before anything is joined."""
    from prfaas.model.engine.engine import RequestCache

    if not 0 < held < num_tokens:
        raise WireFormatError(f"held prefix of {held} tokens for a {num_tokens}-token prompt")
    _, prefix_layers = decode_layers(engine, prefix)
    head = {s.index: s for s in prefix_layers if s.kind == ATTENTION}
    layers = _tail_layers(engine, tail)
    out = []
    for i, state in enumerate(layers):
        want = num_tokens - held if state.kind == ATTENTION else num_tokens
        if state.num_tokens != want:
            raise WireFormatError(f"layer {i}: {state.num_tokens} tokens, expected {want}")
        if state.kind != ATTENTION:
            out.append(state)
            continue
        first = head.get(i)
        if first is None or first.num_tokens < held:
            raise WireFormatError(f"layer {i}: the held prefix does not cover {held} tokens")
        kv = {
            name: torch.cat([first.tensors[name][:, :, :held], t], dim=2)
            for name, t in state.tensors.items()
        }
        out.append(LayerState(i, ATTENTION, num_tokens, kv, state.conv_kernel_size))
    return RequestCache(tuple(out), num_tokens, None)


def _tail_layers(engine: Engine, messages: Iterable[Any]) -> list[LayerState]:
    """The prefill's layer messages (any order), each layer exactly once."""
    by_index: dict[int, LayerState] = {}
    for message in messages:
        for state in decode_layers(engine, message)[1]:
            if state.index in by_index:
                raise WireFormatError(f"layer {state.index} arrived twice")
            by_index[state.index] = state
    if len(by_index) != len(engine.layer_kinds):
        raise WireFormatError(
            f"incomplete cache: {len(by_index)} of {len(engine.layer_kinds)} layers"
        )
    return [by_index[i] for i in range(len(by_index))]
