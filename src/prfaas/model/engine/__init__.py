"""Hybrid-attention engines on Hugging Face transformers (needs the `engine` extra: torch).

Names load lazily so torch-free submodules (presets, tokenizer, errors, hf_spec) import without
torch; `from prfaas.model.engine import Engine` imports torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prfaas.model.engine.cache_ops import LayerState
    from prfaas.model.engine.decode import DecodeBatch, Generation, TokenEvent
    from prfaas.model.engine.engine import Engine, PrefillResult, RequestCache
    from prfaas.model.engine.presets import DEFAULT_PRESET, PRESETS
    from prfaas.model.engine.sampling import SamplingParams

_WHERE = {
    "LayerState": "cache_ops",
    "DecodeBatch": "decode",
    "Generation": "decode",
    "TokenEvent": "decode",
    "Engine": "engine",
    "PrefillResult": "engine",
    "RequestCache": "engine",
    "DEFAULT_PRESET": "presets",
    "PRESETS": "presets",
    "SamplingParams": "sampling",
}

__all__ = [
    "DEFAULT_PRESET",
    "PRESETS",
    "DecodeBatch",
    "Engine",
    "Generation",
    "LayerState",
    "PrefillResult",
    "RequestCache",
    "SamplingParams",
    "TokenEvent",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"prfaas.model.engine.{_WHERE[name]}"), name)
