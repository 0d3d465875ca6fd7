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
from prfaas.model.engine.wire import collect_layers, decode_layers

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
    layers, _ = collect_layers(engine, tail)  # lengths checked per layer below
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

