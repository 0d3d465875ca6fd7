"""Build a model: a seeded random preset, or a local checkpoint folder (no hub access)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from prfaas.model.engine.errors import UnsupportedModelError
from prfaas.model.engine.presets import get_preset
from prfaas.model.engine.tokenizer import (
    ByteTokenizer,
    HFTokenizer,
    Tokenizer,
    save_byte_tokenizer,
)

# Keys that differ between equal models (paths, library versions, load dtype).
_VOLATILE_KEYS = frozenset(
    {"transformers_version", "_name_or_path", "dtype", "torch_dtype", "_attn_implementation"}
)


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A ready fp32 model with the facts a peer must agree on before it accepts our cache."""

    model_id: str
    model: Any  # a transformers PreTrainedModel (CausalLM)
    config: Any  # its text config (the one DynamicCache and StateSpec read)
    tokenizer: Tokenizer
    config_hash: str


def config_hash(config: Any, weights_tag: str) -> str:
    """A short stable hash of the architecture plus where the weights came from."""
    facts = {k: v for k, v in config.to_dict().items() if k not in _VOLATILE_KEYS}
    blob = json.dumps({"config": facts, "weights": weights_tag}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_config(preset_name: str) -> Any:
    """The transformers config of a preset (no weights)."""
    from transformers import AutoConfig

    preset = get_preset(preset_name)
    return AutoConfig.for_model(preset.model_type, **dict(preset.config))


def load_preset(name: str, seed: int = 0) -> LoadedModel:
    """A preset with deterministic random weights: the same (name, seed) gives the same bits."""
    from transformers import AutoModelForCausalLM

    config = build_config(name)
    auto: Any = AutoModelForCausalLM
    # fork_rng: seed our init without disturbing the caller's global RNG stream.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = auto.from_config(config, dtype=torch.float32)
    model.eval()
    text_config = model.config.get_text_config()
    return LoadedModel(
        model_id=name,
        model=model,
        config=text_config,
        tokenizer=ByteTokenizer(),
        config_hash=config_hash(text_config, f"random-seed={seed}"),
    )


def load_checkpoint(path: Path) -> LoadedModel:
    """A local checkpoint (config.json, weights, tokenizer files) in fp32, local files only."""
    from transformers import AutoModelForCausalLM

    if not (path / "config.json").is_file():
        raise UnsupportedModelError(f"{path} has no config.json: not a checkpoint folder")
    try:
        auto: Any = AutoModelForCausalLM
        model = auto.from_pretrained(str(path), dtype=torch.float32, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise UnsupportedModelError(f"cannot load a causal LM from {path}: {exc}") from None
    model.eval()
    text_config = model.config.get_text_config()
    return LoadedModel(
        model_id=path.resolve().name,
        model=model,
        config=text_config,
        tokenizer=HFTokenizer(path),
        config_hash=config_hash(text_config, "checkpoint"),
    )


def save_checkpoint(loaded: LoadedModel, path: Path) -> None:
    """Write a random-weight preset as a checkpoint folder (config, safetensors, tokenizer)."""
    if not isinstance(loaded.tokenizer, ByteTokenizer):
        raise UnsupportedModelError("only random-weight presets are saved this way")
    path.mkdir(parents=True, exist_ok=True)
    loaded.model.save_pretrained(str(path))
    save_byte_tokenizer(path)


def decoder_layers(model: Any) -> Any:
    """The decoder's layer list, where the per-layer hooks go."""
    inner = model.model
    layers = getattr(inner, "layers", None)
    if layers is None and hasattr(inner, "language_model"):
        layers = inner.language_model.layers
    if layers is None:
        raise UnsupportedModelError(f"{type(model).__name__} has no decoder layer list")
    return layers
