"""StateSpec and model presets: every preset equals the arithmetic stated in docs/models.md."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from prfaas.errors import ConfigError, UsageError
from prfaas.model import presets
from prfaas.model.presets import get_model, list_models
from prfaas.model.state_spec import AttentionDims, LayerKind, StateSpec

MODELS_DOC = Path(__file__).resolve().parents[1] / "docs" / "models.md"

# The arithmetic table of docs/models.md (bold numbers), held here too so the doc cannot drift:
# slug -> (full-attention KV bytes/token, SWA bytes per request at the window cap,
# recurrent state bytes per request with fp32 state + bf16 conv).
README_ARITHMETIC: dict[str, tuple[int, int, int]] = {
    "kimi-linear-48b": (8_064, 0, 43_417_600),
    "mimo-v2-flash-309b": (23_040, 25_559_040, 0),
    "qwen3.5-397b-a17b": (30_720, 0, 192_061_440),
    "ring-2.5-1t": (11_520, 0, 293_601_280),
    "minimax-m2.5-229b": (253_952, 0, 0),
    "qwen3-235b-a22b": (192_512, 0, 0),
    "qwen3-next-80b-a3b": (24_576, 0, 77_266_944),
    "deepseek-v3-671b": (70_272, 0, 0),
    "llama-3.1-70b": (327_680, 0, 0),
    "jamba-v0.1-52b": (16_384, 0, 16_056_320),
    "nemotron-h-8b": (16_384, 0, 102_137_856),
    "nemotron-3-nano-30b-a3b": (6_144, 0, 49_082_368),
    "minimax-m1-456b": (40_960, 0, 293_601_280),
    "falcon-h1-34b": (147_456, 0, 304_201_728),
    "qwen3.5-35b-a3b": (20_480, 0, 64_389_120),
    "qwen3.5-122b-a10b": (24_576, 0, 153_649_152),
    "gpt-oss-120b": (36_864, 4_718_592, 0),
}


def _raw(slug: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((presets.PRESETS_DIR / f"{slug}.json").read_text())
    return doc


def test_all_seventeen_presets_are_registered() -> None:
    assert set(README_ARITHMETIC) <= set(list_models())
    assert len(README_ARITHMETIC) == 17


@pytest.mark.parametrize("slug", sorted(README_ARITHMETIC))
def test_preset_matches_readme_arithmetic(slug: str) -> None:
    kv_per_token, swa_cap, state = README_ARITHMETIC[slug]
    spec = get_model(slug).spec
    assert spec.bytes_per_token == kv_per_token
    assert spec.swa_max_bytes == swa_cap
    assert spec.fixed_bytes == state
    # S_kv(l) = KV * l + SWA * min(l, window) + state, the file's s_kv_bytes_formula
    for length in (1, 100, 32_768, 131_072):
        swa = spec.swa_bytes_per_token * min(length, spec.swa_window_tokens)
        assert spec.kv_bytes(length) == kv_per_token * length + swa + state


@pytest.mark.parametrize("slug", sorted(README_ARITHMETIC))
def test_preset_matches_its_own_json_numbers(slug: str) -> None:
    raw, spec = _raw(slug), get_model(slug).spec
    assert spec.bytes_per_token == raw["kv_cache"]["bytes_per_token_full_attention_bf16"]
    counts = raw["layer_counts"]
    assert spec.num_full_layers == counts["full"]
    assert spec.count(LayerKind.SWA) == counts["swa"]
    assert spec.count(LayerKind.NONE) == counts["none"]
    if raw["recurrent_state"]:
        rs = raw["recurrent_state"]
        assert spec.num_state_layers == rs["num_state_layers"]
        assert spec.fixed_bytes == rs["bytes_per_request_fp32_recurrent_bf16_conv"]
        assert spec.with_dtypes(state=2).fixed_bytes == rs["bytes_per_request_all_bf16"]
    if raw["swa_cache"]:
        assert spec.swa_max_bytes == raw["swa_cache"]["max_bytes_per_request_bf16"]


def _readme_rows(text: str) -> dict[str, tuple[int, int, int]]:
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\|[^|]*\(`([a-z0-9.\-]+)`\)", line)
        if not m:
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]

        def bold(cell: str) -> int:
            found = re.search(r"\*\*([\d,]+)\*\*", cell)
            return int(found.group(1).replace(",", "")) if found else 0

        rows[m.group(1)] = (bold(cells[1]), bold(cells[2]), bold(cells[3]))
    return rows


def test_the_models_doc_states_the_same_arithmetic() -> None:
    assert _readme_rows(MODELS_DOC.read_text()) == README_ARITHMETIC


def test_swa_is_capped_at_the_window() -> None:
    spec = get_model("mimo-v2-flash-309b").spec
    assert spec.kv_bytes(128) - spec.kv_bytes(127) == spec.bytes_per_token + 199_680
    assert spec.kv_bytes(10_000) - spec.kv_bytes(9_999) == spec.bytes_per_token


def test_negative_length_rejected() -> None:
    with pytest.raises(ValueError):
        get_model("llama-3.1-70b").spec.kv_bytes(-1)


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(UsageError) as info:
        get_model("gpt-5")
    assert "qwen3.5-397b-a17b" in str(info.value) and "gpt-5" in str(info.value)


def test_lookup_is_case_insensitive() -> None:
    assert get_model("Qwen3.5-397B-A17B").slug == "qwen3.5-397b-a17b"


def test_prefill_flops_grow_and_attention_is_quadratic() -> None:
    dense = get_model("llama-3.1-70b").spec
    f1, f2 = dense.prefill_flops(32_768), dense.prefill_flops(65_536)
    assert 2.0 < f2 / f1 < 4.0  # linear matmuls + quadratic attention
    # Dense part ~ 2 x params x tokens: 70B params -> ~1.4e14 FLOPs per 1K tokens
    assert 1.2e14 < dense.prefill_flops(1000) < 1.6e14
    hybrid = get_model("qwen3.5-397b-a17b").spec
    assert hybrid.prefill_flop_terms().quadratic < dense.prefill_flop_terms().quadratic


def test_swa_flops_are_linear_beyond_the_window() -> None:
    spec = StateSpec(
        name="swa-only",
        layer_kinds=(LayerKind.SWA,),
        swa=AttentionDims(4, 2, 64, 64),
        swa_window=100,
    )
    d1 = spec.prefill_flops(1000) - spec.prefill_flops(900)
    d2 = spec.prefill_flops(2000) - spec.prefill_flops(1900)
    assert d1 == pytest.approx(d2)


def test_missing_dims_for_a_layer_kind_is_an_error() -> None:
    with pytest.raises(ValueError):
        StateSpec(name="bad", layer_kinds=(LayerKind.GQA,))


def test_registry_loads_extra_minimal_presets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for slug in ("qwen3.5-35b-a3b",):
        shutil.copy(presets.PRESETS_DIR / f"{slug}.json", tmp_path)
    tiny = {
        "name": "tiny hybrid",
        "layer_types": ["linear", "linear", "linear", "full_gqa"],
        "gqa": {"num_heads": 4, "num_kv_heads": 2, "head_dim_qk": 32, "head_dim_v": 32},
        "linear": {
            "kind": "gdn",
            "num_k_heads": 2,
            "num_v_heads": 4,
            "head_k_dim": 16,
            "head_v_dim": 16,
            "conv_kernel_size": 4,
        },
    }
    (tmp_path / "qwen3.5-tiny.json").write_text(json.dumps(tiny))
    monkeypatch.setattr(presets, "PRESETS_DIR", tmp_path)
    presets._registry.cache_clear()
    try:
        assert list_models() == ["qwen3.5-35b-a3b", "qwen3.5-tiny"]
        spec = get_model("qwen3.5-tiny").spec
        assert spec.bytes_per_token == 1 * 2 * (32 + 32) * 2
        conv = 3 * (2 * 2 * 16 + 4 * 16)
        assert spec.fixed_bytes == 3 * (4 * 16 * 16 * 4 + conv * 2)
    finally:
        presets._registry.cache_clear()


def test_bad_preset_names_the_field(tmp_path: Path) -> None:
    bad = {"layer_types": ["full_gqa"], "gqa": {"num_heads": 4, "num_kv_heads": "two"}}
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match=r"broken.json.gqa.num_kv_heads"):
        presets.load_preset(path)


def test_shape_cross_check_catches_inconsistent_files(tmp_path: Path) -> None:
    doc = _raw("qwen3.5-35b-a3b")
    doc["linear"]["recurrent_state_shape_per_layer"] = [1, 2, 3]
    path = tmp_path / "x.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="recurrent_state_shape_per_layer"):
        presets.load_preset(path)
