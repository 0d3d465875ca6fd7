"""Sweep grids: axes from `FIELD=V1,V2,...`, their product, and one point applied to a Scenario."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import Any

from prfaas.errors import UsageError
from prfaas.planner.scenario import Scenario
from prfaas.profiles.kv import LinearKvSize

Value = float | int | str
# Axis name -> (type, what it changes). `model` swaps in a preset's S_kv(l) and roofline prefill
# curves on the scenario's hardware; `scale` multiplies every instance count and the link.
AXES: dict[str, tuple[type, str]] = {
    "link_gbps": (float, "cross-cluster link bandwidth, Gbps"),
    "kv_scale": (float, "multiplies S_kv(l) (the KV throughput Phi_kv)"),
    "model": (str, "model preset: its S_kv(l) and roofline prefill on the scenario's GPUs"),
    "scale": (int, "multiplies every instance count and the link bandwidth"),
    "prfaas_instances": (int, "PrfaaS prefill instances"),
    "pd_instances": (int, "PD instances (split N_p + N_d by the planner)"),
    "homogeneous_instances": (int, "homogeneous baseline instances"),
    "output_tokens": (float, "output tokens per request"),
}
ROOFLINE_MFU = 0.4  # the `roofline` prefill profile's default MFU (docs/scenario-format.md)


@dataclass(frozen=True, slots=True)
class Axis:
    name: str
    values: tuple[Value, ...]


def _number(kind: type, text: str, name: str) -> Value:
    try:
        value = kind(float(text)) if kind is int and "." not in text else kind(text)
    except ValueError:
        raise UsageError(f"sweep axis {name}: cannot read {text!r} as {kind.__name__}") from None
    if isinstance(value, float | int) and not (math.isfinite(value) and value > 0):
        raise UsageError(f"sweep axis {name}: values must be > 0, got {text!r}")
    return value


def _logspace(spec: str, name: str) -> tuple[float, ...]:
    """`log:LO:HI:N` -> N values log-spaced from LO to HI (inclusive), 3 significant digits."""
    parts = spec.split(":")
    if len(parts) != 4:
        raise UsageError(f"sweep axis {name}: write log:LO:HI:N, got {spec!r}")
    lo, hi = (float(_number(float, p, name)) for p in parts[1:3])
    n = int(_number(int, parts[3], name))
    if n < 2 or hi <= lo:
        raise UsageError(f"sweep axis {name}: log:LO:HI:N needs HI > LO and N >= 2")
    return tuple(float(f"{lo * (hi / lo) ** (i / (n - 1)):.3g}") for i in range(n))


def parse_axis(text: str) -> Axis:
    """`link_gbps=10,100,1000`, `link_gbps=log:1:10000:9`, `model=all` or `model=a,b`."""
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not rest.strip():
        raise UsageError(f"sweep axis {text!r}: write FIELD=V1,V2,... (fields: {', '.join(AXES)})")
    if name not in AXES:
        raise UsageError(f"sweep axis {name!r} is unknown; choose from: {', '.join(AXES)}")
    kind = AXES[name][0]
    rest = rest.strip()
    if kind is str:
        return Axis(name, _models(rest))
    if rest.startswith("log:"):
        return Axis(name, _logspace(rest, name))
    return Axis(name, tuple(_number(kind, v.strip(), name) for v in rest.split(",")))


def _models(text: str) -> tuple[str, ...]:
    from prfaas.model.presets import get_model, list_models

    if text == "all":  # every full-size preset: the *-tiny ones exist for engine tests
        return tuple(m for m in list_models() if not m.endswith("-tiny"))
    names = tuple(v.strip() for v in text.split(","))
    for name in names:
        get_model(name)  # UsageError naming the valid presets
    return names


def points(axes: list[Axis]) -> list[dict[str, Value]]:
    """Every combination, the first axis varying slowest."""
    names = [a.name for a in axes]
    if len(set(names)) != len(names):
        raise UsageError("sweep: each axis may appear once")
    return [
        dict(zip(names, combo, strict=True))
        for combo in itertools.product(*(a.values for a in axes))
    ]


def apply(scn: Scenario, point: dict[str, Any]) -> Scenario:
    """The scenario at one grid point (scale first, then the fields that set values)."""
    k = int(point.get("scale", 1))
    if k != 1:
        scn = replace(
            scn,
            prfaas_instances=scn.prfaas_instances * k,
            pd_instances=scn.pd_instances * k,
            homogeneous_instances=scn.homogeneous_instances * k,
            link_gbps=scn.link_gbps * k,
        )
    if "model" in point:
        scn = _with_model(scn, str(point["model"]))
    if "kv_scale" in point:
        scn = replace(scn, kv_size=_scaled_kv(scn, float(point["kv_scale"])))
    fields = ("link_gbps", "prfaas_instances", "pd_instances", "homogeneous_instances")
    changes = {f: point[f] for f in fields if f in point}
    if "output_tokens" in point:
        changes["output_tokens"] = float(point["output_tokens"])
    return replace(scn, **changes) if changes else scn


def _with_model(scn: Scenario, name: str) -> Scenario:
    from prfaas.model.presets import get_model
    from prfaas.profiles.roofline import roofline_prefill

    spec = get_model(name).spec
    return replace(
        scn,
        name=f"{scn.name}:{name}",
        kv_size=LinearKvSize.from_state_spec(spec),
        prfaas_prefill=roofline_prefill(
            spec, scn.prfaas_hardware, gpus=scn.prfaas_gpus_per_instance, mfu=ROOFLINE_MFU
        ),
        pd_prefill=roofline_prefill(
            spec, scn.pd_hardware, gpus=scn.pd_gpus_per_instance, mfu=ROOFLINE_MFU
        ),
    )


def _scaled_kv(scn: Scenario, k: float) -> LinearKvSize:
    kv = scn.kv_size
    if not isinstance(kv, LinearKvSize):
        raise UsageError(f"kv_scale needs a linear KV profile; {kv.name} is not one")
    return replace(
        kv,
        fixed_bytes=kv.fixed_bytes * k,
        bytes_per_token=kv.bytes_per_token * k,
        swa_bytes_per_token=kv.swa_bytes_per_token * k,
        name=f"{kv.name} x{k:g}",
    )


def phi_kv_gbps(scn: Scenario, tokens: int) -> float:
    """Eq (1): a PrfaaS instance's KV throughput S_kv(l) / T_prefill(l) at l tokens, Gbps."""
    return float(scn.kv_size.bytes(tokens)) * 8 / float(scn.prfaas_prefill.time_s(tokens)) / 1e9
