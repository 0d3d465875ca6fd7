"""Per-layer hand-off: forward hooks that pass each finished layer's cache to a consumer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from transformers import DynamicCache

from prfaas.model.engine.cache_ops import LayerState, export_layer

# Called on the compute thread right after layer i finished; keep it short (e.g. put into a
# queue.Queue read by a sender thread) so the transfer overlaps the remaining layers.
LayerCallback = Callable[[LayerState], None]


@contextmanager
def layer_handoff(
    layers: Any, cache: DynamicCache, num_tokens: int, on_layer: LayerCallback | None
) -> Iterator[None]:
    """While active, every decoder layer's forward end hands `on_layer` that layer's final cache."""
    if on_layer is None:
        yield
        return
    handles = []
    for index, module in enumerate(layers):

        def hook(_module: Any, _args: Any, _output: Any, index: int = index) -> None:
            on_layer(export_layer(cache, index, num_tokens))

        handles.append(module.register_forward_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class PrefillAborted(Exception):
    """A prefill stopped at a layer boundary because its request was cancelled."""


@contextmanager
def abort_between_layers(layers: Any, should_stop: Callable[[], bool] | None) -> Iterator[None]:
    """While active, every decoder layer first asks `should_stop` (a cancelled request): True
    raises PrefillAborted there, so a cancelled prefill frees the compute within one layer."""
    if should_stop is None:
        yield
        return

    def check(_module: Any, _args: Any) -> None:
        if should_stop():
            raise PrefillAborted("prefill cancelled")

    handles = [module.register_forward_pre_hook(check) for module in layers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
