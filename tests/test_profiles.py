"""Profiles: Table 5 fits, the inferred H20 curve, decode capacity, hardware, roofline fallback."""

from __future__ import annotations

import numpy as np
import pytest

from prfaas.errors import ConfigError, UsageError
from prfaas.model.presets import get_model
from prfaas.profiles import (
    DecodeProfile,
    LinearKvSize,
    MeasuredPoint,
    TablePrefill,
    fit_polynomial,
    get_hardware,
    get_kv_profile,
    get_prefill_profile,
    list_hardware,
    paper,
    quadratic,
    roofline_prefill,
)
from prfaas.profiles.kv import MIB


def test_h200_fit_reproduces_paper_md_section_9_2() -> None:
    fit = paper.h200_prefill()
    assert fit.coeffs == pytest.approx((9.93649507e-11, 4.20550425e-05, 0.389123511), rel=1e-8)
    assert "Table 5" in fit.provenance
    # The least-squares quadratic stays within 0.05 s of every measured latency.
    for point in paper.TABLE5_POINTS:
        assert abs(fit.time_s(point.tokens) - point.prefill_s) < 0.05


def test_h20_curve_is_labelled_inferred_and_matches_section_9_3() -> None:
    h20 = paper.h20_prefill_inferred()
    assert "INFERRED" in h20.provenance
    assert h20.coeffs == pytest.approx((2.94027e-10, 1.30039e-04, 0.469012), rel=1e-5)
    # Passes through its three back-solved points exactly.
    for point in paper.H20_INFERRED_POINTS:
        assert h20.time_s(point.tokens) == pytest.approx(point.prefill_s, rel=1e-9)
    # paper.md: "about 0.60, 1.53, 4.93 and 21.9 s at 1K, 8K, 32K and 128K"
    got = h20.time_s(np.array([1000, 8000, 32000, 128000]))
    assert got == pytest.approx([0.60, 1.53, 4.93, 21.9], abs=0.05)


def test_table5_kv_fit_is_linear_with_172_mib_state() -> None:
    kv = paper.table5_kv_size()
    assert kv.fixed_bytes / MIB == pytest.approx(172.0, abs=0.5)
    for point in paper.TABLE5_POINTS:
        assert abs(kv.bytes(point.tokens) - point.kv_bytes) < 7 * MIB  # residuals <= 6.4 MiB
    assert get_kv_profile("paper-table5") == kv


def test_decode_profile_is_800_tokens_per_second() -> None:
    decode = paper.h20_decode()
    assert decode.tokens_per_s == pytest.approx(800.0)
    assert decode.requests_per_s(1024) == pytest.approx(0.78125)
    with pytest.raises(ConfigError):
        DecodeProfile(bs_max=0, t_decode_s=0.025)
    with pytest.raises(ConfigError):
        DecodeProfile(bs_max=4, t_decode_s=-1.0)


def test_scalar_in_scalar_out_array_in_array_out() -> None:
    fit = get_prefill_profile("paper-h200")
    assert isinstance(fit.time_s(1000), float)
    out = fit.time_s(np.array([1000.0, 2000.0]))
    assert isinstance(out, np.ndarray) and out.shape == (2,)


def test_unknown_profile_names_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="paper-h200"):
        get_prefill_profile("h100-measured")
    with pytest.raises(UsageError, match="H200"):
        get_hardware("TPUv9")


def test_hardware_presets_and_price_override() -> None:
    assert {"H200", "H20", "H100", "B200"} <= set(list_hardware())
    h20 = get_hardware("h20")
    assert h20.bf16_tflops == 148.0 and h20.hbm_gb == 96.0
    assert get_hardware("H200").price_per_gpu_hour / h20.price_per_gpu_hour == pytest.approx(2.0)
    assert h20.with_price(0.9).price_per_gpu_hour == 0.9
    with pytest.raises(UsageError):
        h20.with_price(-1.0)


def test_table_prefill_interpolates_and_extrapolates() -> None:
    table = TablePrefill(points=paper.TABLE5_POINTS, name="t", provenance="test")
    assert table.time_s(8000) == pytest.approx(0.72)
    assert table.time_s(20_000) == pytest.approx(0.72 + (1.84 - 0.72) * 12 / 24)
    assert table.time_s(256_000) > table.time_s(128_000)
    with pytest.raises(ConfigError):
        TablePrefill(points=(MeasuredPoint(10, 1.0),), name="x", provenance="")


def test_polynomial_rejects_decreasing_or_negative_times() -> None:
    with pytest.raises(ConfigError):
        quadratic(-1e-9, 1e-5, 0.1, name="bad", provenance="")
    with pytest.raises(ConfigError):
        fit_polynomial([MeasuredPoint(1, 1.0)], 2, name="few", provenance="")


def test_roofline_scales_with_gpus_mfu_and_is_labelled_an_estimate() -> None:
    spec = get_model("qwen3.5-397b-a17b").spec
    h200 = get_hardware("H200")
    r8 = roofline_prefill(spec, h200, gpus=8, mfu=0.4, overhead_s=0.0)
    r16 = roofline_prefill(spec, h200, gpus=16, mfu=0.4, overhead_s=0.0)
    assert r8.time_s(32_768) == pytest.approx(2 * r16.time_s(32_768))
    assert r8.time_s(32_768) == pytest.approx(spec.prefill_flops(32_768) / (8 * 989e12 * 0.4))
    assert "ROOFLINE" in r8.provenance
    lengths = np.array([1e3, 1e4, 1e5])
    assert np.all(np.diff(r8.time_s(lengths)) > 0)
    with pytest.raises(ConfigError):
        roofline_prefill(spec, h200, mfu=1.5)


def test_kv_from_state_spec_matches_spec() -> None:
    spec = get_model("mimo-v2-flash-309b").spec
    kv = LinearKvSize.from_state_spec(spec)
    for length in (10, 128, 5000):
        assert kv.bytes(length) == spec.kv_bytes(length)
