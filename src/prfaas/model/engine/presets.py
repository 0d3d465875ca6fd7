"""Tiny seeded random-weight presets of the paper's model families (transformers configs)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prfaas.model.engine.errors import UnsupportedModelError

DEFAULT_PRESET = "qwen3.5-tiny"

# Byte-level vocabulary: 256 bytes, then PAD, BOS, EOS.
BYTE_VOCAB = 259
PAD_ID, BOS_ID, EOS_ID = 256, 257, 258

_NUM_LAYERS = 8
# Full attention on every 4th layer: 3 linear : 1 full, as in Qwen3.5 and Kimi Linear.
HYBRID_3_1 = tuple(
    "linear_attention" if (i + 1) % 4 else "full_attention" for i in range(_NUM_LAYERS)
)

_COMMON: dict[str, Any] = {
    "vocab_size": BYTE_VOCAB,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": _NUM_LAYERS,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 8192,
    "tie_word_embeddings": False,
    "pad_token_id": PAD_ID,
    "bos_token_id": BOS_ID,
    "eos_token_id": EOS_ID,
}


@dataclass(frozen=True, slots=True)
class EnginePreset:
    """A named transformers config with random weights; `config` feeds AutoConfig.for_model."""

    name: str
    model_type: str
    description: str
    config: Mapping[str, Any] = field(default_factory=dict)


PRESETS: dict[str, EnginePreset] = {
    p.name: p
    for p in (
        EnginePreset(
            "qwen3.5-tiny",
            "qwen3_5_text",
            "Qwen3.5-style hybrid: Gated DeltaNet : GQA = 3:1 (dense MLP)",
            {
                **_COMMON,
                "head_dim": 32,
                "layer_types": list(HYBRID_3_1),
                "linear_conv_kernel_dim": 4,
                "linear_key_head_dim": 32,
                "linear_value_head_dim": 32,
                "linear_num_key_heads": 2,
                "linear_num_value_heads": 4,
            },
        ),
        EnginePreset(
            "kimi-linear-tiny",
            "kimi_linear",
            "Kimi-Linear-style hybrid: KDA : MLA = 3:1 (MoE MLP after layer 0)",
            {
                **_COMMON,
                "num_key_value_heads": 4,  # MLA expands its latent to every head
                "layer_types": list(HYBRID_3_1),
                "kv_lora_rank": 64,
                "qk_rope_head_dim": 16,
                "qk_nope_head_dim": 32,
                "v_head_dim": 32,
                "q_lora_rank": None,
                "linear_head_dim": 32,
                "linear_num_heads": 4,
                "linear_conv_kernel_dim": 4,
                "num_local_experts": 4,
                "num_experts_per_tok": 2,
                "moe_intermediate_size": 64,
                "mlp_layer_types": ["dense"] + ["sparse"] * (_NUM_LAYERS - 1),
            },
        ),
        EnginePreset(
            "qwen3-tiny",
            "qwen3",
            "dense Qwen3 baseline: GQA in every layer",
            {**_COMMON, "head_dim": 32},
        ),
    )
}


def get_preset(name: str) -> EnginePreset:
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(sorted(PRESETS))
        raise UnsupportedModelError(f"unknown engine preset {name!r} (known: {known})") from None
