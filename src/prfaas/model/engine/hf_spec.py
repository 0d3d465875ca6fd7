"""Map a transformers config to the torch-free StateSpec (the one source of truth for sizes)."""

from __future__ import annotations

from typing import Any

from prfaas.model.engine.errors import UnsupportedModelError
from prfaas.model.state_spec import (
    AttentionDims,
    LayerKind,
    LinearKind,
    LinearStateDims,
    MlaDims,
    StateSpec,
)

FP32_BYTES = 4
_GDN_TYPES = frozenset({"qwen3_5_text", "qwen3_5_moe_text", "qwen3_next", "olmo_hybrid"})
_KDA_TYPES = frozenset({"kimi_linear"})


def layer_kinds(config: Any) -> tuple[LayerKind, ...]:
    """StateSpec layer kinds from `config.layer_types` (all full attention when absent)."""
    mla = getattr(config, "kv_lora_rank", None) is not None
    full = LayerKind.MLA if mla else LayerKind.GQA
    mapping = {
        "full_attention": full,
        "linear_attention": LayerKind.LINEAR,
        "sliding_attention": LayerKind.SWA,
    }
    types = getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers
    try:
        return tuple(mapping[t] for t in types)
    except KeyError as exc:
        raise UnsupportedModelError(
            f"layer type {exc.args[0]!r} has no StateSpec mapping"
        ) from None


def _gqa(config: Any) -> AttentionDims:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    return AttentionDims(config.num_attention_heads, kv_heads, head_dim, head_dim)


def _mla(config: Any) -> MlaDims:
    return MlaDims(
        num_heads=config.num_attention_heads,
        kv_lora_rank=config.kv_lora_rank,
        qk_rope_head_dim=config.qk_rope_head_dim,
        qk_nope_head_dim=config.qk_nope_head_dim,
        v_head_dim=config.v_head_dim,
    )


def _linear(config: Any) -> LinearStateDims:
    """Recurrent (heads, d_k, d_v) and conv (kernel-1) x channels, as the engine exports them."""
    model_type = config.model_type
    kernel = config.linear_conv_kernel_dim
    if model_type in _GDN_TYPES:
        nk, nv = config.linear_num_key_heads, config.linear_num_value_heads
        dk, dv = config.linear_key_head_dim, config.linear_value_head_dim
        channels = 2 * nk * dk + nv * dv
        return LinearStateDims(LinearKind.GDN, nv, dk, dv, (kernel - 1) * channels)
    if model_type in _KDA_TYPES:
        heads, hd = config.linear_num_heads, config.linear_head_dim
        return LinearStateDims(LinearKind.KDA, heads, hd, hd, (kernel - 1) * 3 * heads * hd)
    raise UnsupportedModelError(f"no linear-state mapping for model_type {model_type!r}")


def state_spec_from_config(
    config: Any, *, name: str, dtype_bytes: int = FP32_BYTES, active_params: float = 0.0
) -> StateSpec:
    """The StateSpec of what the engine holds per request at `dtype_bytes` (fp32 compute).

    For a wire dtype use `.with_dtypes(kv=2, conv=2)`: the recurrent state always travels fp32.
    """
    kinds = layer_kinds(config)
    if LayerKind.SWA in kinds:
        raise UnsupportedModelError("sliding-window layers are not supported by the engine yet")
    has = set(kinds)
    return StateSpec(
        name=name,
        layer_kinds=kinds,
        gqa=_gqa(config) if LayerKind.GQA in has else None,
        mla=_mla(config) if LayerKind.MLA in has else None,
        linear=_linear(config) if LayerKind.LINEAR in has else None,
        kv_dtype_bytes=dtype_bytes,
        state_dtype_bytes=FP32_BYTES,  # transformers keeps recurrent states in fp32
        conv_dtype_bytes=dtype_bytes,
        active_params=float(active_params),
        hidden_size=int(config.hidden_size),
        vocab_size=int(config.vocab_size),
    )


def count_params(model: Any) -> tuple[int, int]:
    """(total, active per token) parameters; routed experts count top-k / num-experts."""
    total = sum(p.numel() for p in model.parameters())
    config = model.config.get_text_config()
    num_experts = getattr(config, "num_local_experts", None) or getattr(config, "num_experts", None)
    top_k = getattr(config, "num_experts_per_tok", None)
    idle = 0.0
    if num_experts and top_k:
        for module in model.modules():
            if type(module).__name__.endswith("Experts"):
                n = sum(p.numel() for p in module.parameters(recurse=False))
                idle += n * (1 - top_k / num_experts)
    return total, round(total - idle)
