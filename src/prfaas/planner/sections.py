"""Readers for each table of a scenario file ([workload], [prfaas]/[pd], [decode], [kv])."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prfaas.errors import ConfigError, UsageError
from prfaas.planner.fields import Table
from prfaas.profiles import (
    DecodeProfile,
    HardwareSpec,
    KvSizeProfile,
    LinearKvSize,
    MeasuredPoint,
    PrefillProfile,
    TablePrefill,
    fit_polynomial,
    get_hardware,
    get_kv_profile,
    get_prefill_profile,
    quadratic,
    roofline_prefill,
)
from prfaas.workload.lengths import EmpiricalLengths, LengthDistribution, TruncatedLogNormal
from prfaas.workload.traces import resolve_trace

DEFAULT_BANDWIDTH_SWEEP_GBPS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 400.0)


@dataclass(frozen=True, slots=True)
class ClusterSection:
    """A parsed [prfaas] or [pd] table."""

    instances: int
    hardware: HardwareSpec
    gpus: int
    price: float
    prefill: PrefillProfile


def req(root: Table, key: str) -> Table:
    """A required sub-table."""
    table = root.table(key)
    assert table is not None
    return table


def parse_workload(
    table: Table, base_dir: Path, traces_dir: Path | None
) -> tuple[LengthDistribution, float]:
    kind = table.string("lengths")
    output_tokens = table.number("output_tokens", strict_min=True)
    dist: LengthDistribution
    if kind == "lognormal":
        mu = table.number("mu", minimum=-1e9)
        sigma = table.number("sigma", strict_min=True)
        lo = table.number("min_tokens", strict_min=True)
        hi = table.number("max_tokens", strict_min=True)
        if hi <= lo:
            raise table.fail("max_tokens", f"must be > workload.min_tokens ({lo:g}), got {hi:g}")
        dist = TruncatedLogNormal(mu, sigma, lo, hi)
    elif kind == "trace":
        dist = EmpiricalLengths.from_trace(_trace_path(table, base_dir, traces_dir))
    else:
        raise table.fail("lengths", f"must be 'lognormal' or 'trace', got {kind!r}")
    table.finish()
    return dist, output_tokens


def _trace_path(table: Table, base_dir: Path, traces_dir: Path | None) -> Path:
    try:
        return resolve_trace(table.string("trace"), traces_dir=traces_dir, base_dir=base_dir)
    except UsageError as exc:
        raise table.fail("trace", f"names no trace: {exc}") from None


def parse_cluster(table: Table) -> ClusterSection:
    instances = table.integer("instances")
    hw_name = table.string("hardware")
    try:
        hardware = get_hardware(hw_name)
    except UsageError as exc:
        raise table.fail("hardware", f"is invalid: {exc}") from None
    gpus = table.integer("gpus_per_instance", default=8, minimum=1)
    price = table.number("price_per_gpu_hour", default=hardware.price_per_gpu_hour)
    hardware = hardware.with_price(price)
    prefill = _prefill(table, hardware, gpus)
    table.finish()
    return ClusterSection(instances, hardware, gpus, price, prefill)


def _prefill(table: Table, hardware: HardwareSpec, gpus: int) -> PrefillProfile:
    if not table.has("prefill"):
        table.raw("prefill")  # raises "is missing"
    if isinstance(table.data["prefill"], str):
        name = table.string("prefill")
        try:
            return get_prefill_profile(name)
        except UsageError as exc:
            raise table.fail("prefill", f"is invalid: {exc}") from None
    sub = req(table, "prefill")
    kind = sub.string("kind")
    profile: PrefillProfile
    if kind == "quadratic":
        a2, a1 = sub.number("a2"), sub.number("a1")
        a0 = sub.number("a0", strict_min=True)
        profile = quadratic(a2, a1, a0, name=f"{table.path}-quadratic", provenance="scenario file")
    elif kind in ("table", "fit"):
        profile = _prefill_table(sub, kind, table.path)
    elif kind == "roofline":
        profile = _roofline(sub, hardware, gpus)
    else:
        raise sub.fail("kind", f"must be quadratic, table, fit or roofline, got {kind!r}")
    sub.finish()
    return profile


def _prefill_table(sub: Table, kind: str, label: str) -> PrefillProfile:
    tokens = sub.numbers("tokens", strict_min=True)
    seconds = sub.numbers("seconds", strict_min=True)
    if len(tokens) != len(seconds):
        raise sub.fail("seconds", f"must have as many entries as tokens ({len(tokens)})")
    points = tuple(MeasuredPoint(t, s) for t, s in zip(tokens, seconds, strict=True))
    where = f"scenario file {sub.path}"
    try:
        if kind == "table":
            return TablePrefill(points=points, name=f"{label}-table", provenance=where)
        degree = sub.integer("degree", default=2, minimum=1)
        return fit_polynomial(points, degree, name=f"{label}-fit", provenance=f"fit of {where}")
    except ConfigError as exc:
        raise sub.fail("tokens", f"is invalid: {exc}") from None


def _roofline(sub: Table, hardware: HardwareSpec, gpus: int) -> PrefillProfile:
    from prfaas.model.presets import get_model

    model_name = sub.string("model")
    try:
        spec = get_model(model_name).spec
    except UsageError as exc:
        raise sub.fail("model", f"is invalid: {exc}") from None
    mfu = sub.number("mfu", default=0.4, strict_min=True)
    if mfu > 1:
        raise sub.fail("mfu", f"must be <= 1, got {mfu:g}")
    overhead = sub.number("overhead_s", default=0.05)
    dtype = sub.string("dtype", default="bf16")
    if dtype not in ("bf16", "fp8"):
        raise sub.fail("dtype", f"must be bf16 or fp8, got {dtype!r}")
    return roofline_prefill(spec, hardware, gpus=gpus, mfu=mfu, overhead_s=overhead, dtype=dtype)


def parse_decode(table: Table) -> DecodeProfile:
    bs_max = table.integer("bs_max", minimum=1)
    t_decode = table.number("t_decode_s", strict_min=True)
    table.finish()
    return DecodeProfile(
        bs_max=bs_max,
        t_decode_s=t_decode,
        name=f"{table.path}",
        provenance=(
            f"scenario file: BS_max {bs_max} / T_decode {t_decode:g} s = "
            f"{bs_max / t_decode:g} tokens/s per instance"
        ),
    )


def parse_kv(table: Table) -> KvSizeProfile:
    given = [k for k in ("profile", "model", "bytes_per_token") if table.has(k)]
    if len(given) != 1:
        raise table.fail("profile", "needs exactly one of profile, model or bytes_per_token")
    kv: KvSizeProfile
    if given[0] == "profile":
        name = table.string("profile")
        try:
            kv = get_kv_profile(name)
        except UsageError as exc:
            raise table.fail("profile", f"is invalid: {exc}") from None
    elif given[0] == "model":
        kv = _kv_model(table)
    else:
        kv = LinearKvSize(
            fixed_bytes=table.number("fixed_bytes", default=0.0),
            bytes_per_token=table.number("bytes_per_token", strict_min=True),
            name="scenario kv",
            provenance="scenario file",
        )
    table.finish()
    return kv


def _kv_model(table: Table) -> KvSizeProfile:
    from prfaas.model.presets import get_model

    try:
        spec = get_model(table.string("model")).spec
    except UsageError as exc:
        raise table.fail("model", f"is invalid: {exc}") from None
    state = table.integer("state_dtype_bytes", default=spec.state_dtype_bytes, minimum=1)
    kv_bytes = table.integer("kv_dtype_bytes", default=spec.kv_dtype_bytes, minimum=1)
    return LinearKvSize.from_state_spec(spec.with_dtypes(kv=kv_bytes, state=state))
