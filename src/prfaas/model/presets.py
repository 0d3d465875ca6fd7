"""Model presets: every presets/*.json file becomes a ModelPreset with a torch-free StateSpec.

Minimal schema of a preset file (extra keys are kept as documentation and ignored):

    {
      "slug": "qwen3.5-tiny",            # optional, defaults to the file name without .json
      "name": "Qwen3.5 tiny (test)",     # optional display name
      "layer_types": ["linear", "linear", "linear", "full_gqa", ...],
          # one entry per layer: full_gqa | full_mla | swa | linear | none
      "gqa":  {"num_heads": 8, "num_kv_heads": 2, "head_dim_qk": 64, "head_dim_v": 64},
          # required if any full_gqa layer
      "mla":  {"num_heads": 32, "kv_lora_rank": 512, "qk_rope_head_dim": 64,
               "qk_nope_head_dim": 128, "v_head_dim": 128},       # required if any full_mla layer
      "swa":  {"sliding_window": 128, "num_heads": 64, "num_kv_heads": 8,
               "head_dim_qk": 64, "head_dim_v": 64},              # required if any swa layer
      "linear": {"kind": "gdn", ...},    # required if any linear layer; per kind:
          # gdn:       num_k_heads, num_v_heads, head_k_dim, head_v_dim, conv_kernel_size
          # kda:       num_heads, head_k_dim, conv_kernel_size
          # lightning: num_heads, head_k_dim, head_v_dim                (no conv state)
          # mamba2:    mamba_num_heads, mamba_head_dim, d_state, n_groups, d_inner, conv_kernel_size
          # mamba1:    d_inner, d_state, conv_kernel_size
          # optional cross-checks: recurrent_state_shape_per_layer, conv_state_shape_per_layer
      "parallel_ssm_layers": "all layers",  # optional: every layer also carries linear state
      "params_total": 0, "params_active": 0, "hidden_size": 0, "vocab_size": 0,  # optional (FLOPs)
      "kv_dtype_bytes": 2, "state_dtype_bytes": 4, "conv_dtype_bytes": 2,         # optional
      "sources": ["where the numbers come from"]                                  # optional
    }
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from prfaas.errors import ConfigError, UsageError
from prfaas.model.state_spec import (
    AttentionDims,
    LayerKind,
    LinearKind,
    LinearStateDims,
    MlaDims,
    StateSpec,
)

PRESETS_DIR = Path(__file__).with_name("presets")


@dataclass(frozen=True, slots=True)
class ModelPreset:
    slug: str
    name: str
    spec: StateSpec
    params_total: float
    params_active: float
    sources: tuple[str, ...]
    path: Path
    dense_baseline: str | None = None  # preset `prfaas kv` compares against by default


def _int(block: dict[str, Any], key: str, where: str) -> int:
    value = block.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}.{key} must be an integer >= 0, got {value!r}")
    return value


def _num(doc: dict[str, Any], key: str, where: str, default: float = 0.0) -> float:
    value = doc.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}.{key} must be a number, got {value!r}")
    return float(value)


def _block(doc: dict[str, Any], key: str, where: str) -> dict[str, Any] | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"{where}.{key} must be an object")
    return value


def _attention(block: dict[str, Any], where: str) -> AttentionDims:
    return AttentionDims(
        *(_int(block, k, where) for k in ("num_heads", "num_kv_heads", "head_dim_qk", "head_dim_v"))
    )


def _mla(block: dict[str, Any], where: str) -> MlaDims:
    keys = ("num_heads", "kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim")
    return MlaDims(*(_int(block, k, where) for k in keys))


def _linear(block: dict[str, Any], where: str) -> LinearStateDims:
    """vLLM mamba_utils state shapes per linear kind (docs/models.md)."""
    try:
        kind = LinearKind(str(block.get("kind")))
    except ValueError:
        valid = ", ".join(k.value for k in LinearKind)
        got = block.get("kind")
        raise ConfigError(f"{where}.kind must be one of {valid}, got {got!r}") from None

    def g(key: str) -> int:
        return _int(block, key, where)

    if kind is LinearKind.GDN:
        heads, d_k, d_v = g("num_v_heads"), g("head_k_dim"), g("head_v_dim")
        channels = 2 * g("num_k_heads") * d_k + heads * d_v
        dims = LinearStateDims(kind, heads, d_k, d_v, (g("conv_kernel_size") - 1) * channels)
    elif kind is LinearKind.KDA:
        heads, hd = g("num_heads"), g("head_k_dim")
        dims = LinearStateDims(kind, heads, hd, hd, (g("conv_kernel_size") - 1) * heads * hd * 3)
    elif kind is LinearKind.LIGHTNING:
        dims = LinearStateDims(kind, g("num_heads"), g("head_k_dim"), g("head_v_dim"), 0)
    elif kind is LinearKind.MAMBA2:
        channels = g("d_inner") + 2 * g("n_groups") * g("d_state")
        conv = (g("conv_kernel_size") - 1) * channels
        dims = LinearStateDims(kind, g("mamba_num_heads"), g("mamba_head_dim"), g("d_state"), conv)
    else:
        conv = (g("conv_kernel_size") - 1) * g("d_inner")
        dims = LinearStateDims(kind, g("d_inner"), 1, g("d_state"), conv, chunked=False)
    _cross_check(block, dims, where)
    return dims


def _cross_check(block: dict[str, Any], dims: LinearStateDims, where: str) -> None:
    """If the file also states the shapes, they must agree with the formula."""
    for key, expected in (
        ("recurrent_state_shape_per_layer", dims.recurrent_elements),
        ("conv_state_shape_per_layer", dims.conv_elements),
    ):
        shape = block.get(key)
        if shape is None:
            continue
        if math.prod(int(x) for x in shape) != expected:
            raise ConfigError(f"{where}.{key} {shape} disagrees with the {dims.kind} formula")


def _layer_kinds(doc: dict[str, Any], where: str) -> tuple[LayerKind, ...]:
    raw = doc.get("layer_types")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where}.layer_types must be a non-empty list")
    try:
        return tuple(LayerKind(x) for x in raw)
    except ValueError:
        valid = ", ".join(k.value for k in LayerKind)
        raise ConfigError(f"{where}.layer_types entries must be one of {valid}") from None


def spec_from_dict(doc: dict[str, Any], slug: str, where: str) -> StateSpec:
    """Build a StateSpec from a preset document (see the module docstring for the schema)."""
    kinds = _layer_kinds(doc, where)
    gqa, mla = _block(doc, "gqa", where), _block(doc, "mla", where)
    swa, lin = _block(doc, "swa", where), _block(doc, "linear", where)
    if lin is not None and "kind" not in lin and doc.get("linear_kind"):
        lin = {**lin, "kind": doc["linear_kind"]}
    try:
        return StateSpec(
            name=slug,
            layer_kinds=kinds,
            gqa=_attention(gqa, f"{where}.gqa") if gqa else None,
            mla=_mla(mla, f"{where}.mla") if mla else None,
            swa=_attention(swa, f"{where}.swa") if swa else None,
            swa_window=_int(swa, "sliding_window", f"{where}.swa") if swa else 0,
            linear=_linear(lin, f"{where}.linear") if lin else None,
            parallel_ssm=bool(doc.get("parallel_ssm_layers")),
            kv_dtype_bytes=int(_num(doc, "kv_dtype_bytes", where, 2)),
            state_dtype_bytes=int(_num(doc, "state_dtype_bytes", where, 4)),
            conv_dtype_bytes=int(_num(doc, "conv_dtype_bytes", where, 2)),
            active_params=_num(doc, "params_active", where),
            hidden_size=int(_num(doc, "hidden_size", where)),
            vocab_size=int(_num(doc, "vocab_size", where)),
        )
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_preset(path: Path) -> ModelPreset:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"model preset {path.name}: cannot read JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"model preset {path.name}: top level must be an object")
    slug = str(doc.get("slug") or path.stem)
    spec = spec_from_dict(doc, slug, path.name)
    return ModelPreset(
        slug=slug,
        name=str(doc.get("name") or slug),
        spec=spec,
        params_total=_num(doc, "params_total", path.name),
        params_active=_num(doc, "params_active", path.name),
        sources=tuple(str(s) for s in doc.get("sources") or ()),
        path=path,
        dense_baseline=str(doc["dense_baseline"]) if doc.get("dense_baseline") else None,
    )


@lru_cache(maxsize=1)
def _registry() -> dict[str, ModelPreset]:
    presets = [load_preset(p) for p in sorted(PRESETS_DIR.glob("*.json"))]
    return {p.slug: p for p in presets}


def list_models() -> list[str]:
    """Slugs of every preset, sorted."""
    return sorted(_registry())


def get_model(name: str) -> ModelPreset:
    """Preset by slug (case-insensitive); UsageError listing the valid names otherwise."""
    registry = _registry()
    key = str(name).strip().lower()
    for slug, preset in registry.items():
        if slug.lower() == key:
            return preset
    raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(sorted(registry))}")
