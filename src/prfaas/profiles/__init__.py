"""Planner/simulator inputs: prefill and decode profiles with provenance, KV sizes, hardware."""

from __future__ import annotations

from prfaas.errors import UsageError
from prfaas.profiles.decode import DecodeProfile
from prfaas.profiles.hardware import HARDWARE, HardwareSpec, get_hardware, list_hardware
from prfaas.profiles.kv import KvSizeProfile, LinearKvSize, fit_linear_kv
from prfaas.profiles.prefill import (
    MeasuredPoint,
    PolynomialPrefill,
    PrefillProfile,
    TablePrefill,
    fit_polynomial,
    quadratic,
)
from prfaas.profiles.roofline import RooflinePrefill, roofline_prefill

__all__ = [
    "HARDWARE",
    "DecodeProfile",
    "HardwareSpec",
    "KvSizeProfile",
    "LinearKvSize",
    "MeasuredPoint",
    "PolynomialPrefill",
    "PrefillProfile",
    "RooflinePrefill",
    "TablePrefill",
    "fit_linear_kv",
    "fit_polynomial",
    "get_hardware",
    "get_kv_profile",
    "get_prefill_profile",
    "list_hardware",
    "list_prefill_profiles",
    "quadratic",
    "roofline_prefill",
]


def _paper_table5_linear() -> PrefillProfile:
    from prfaas.profiles.paper import TABLE5_POINTS, TABLE5_SOURCE

    return TablePrefill(
        points=TABLE5_POINTS,
        name="paper-h200-linear",
        provenance=f"piecewise-linear interpolation of {TABLE5_SOURCE}",
    )


def list_prefill_profiles() -> list[str]:
    return ["paper-h200", "paper-h200-linear", "paper-h20-inferred"]


def get_prefill_profile(name: str) -> PrefillProfile:
    """A named prefill profile (see list_prefill_profiles())."""
    from prfaas.profiles import paper

    builders = {
        "paper-h200": paper.h200_prefill,
        "paper-h200-linear": _paper_table5_linear,
        "paper-h20-inferred": paper.h20_prefill_inferred,
    }
    if name not in builders:
        valid = ", ".join(list_prefill_profiles())
        raise UsageError(f"unknown prefill profile {name!r}; choose one of: {valid}")
    return builders[name]()


def get_kv_profile(name: str) -> KvSizeProfile:
    """A named KV-size profile: 'paper-table5' (measured), or any model preset name (StateSpec)."""
    if name == "paper-table5":
        from prfaas.profiles.paper import table5_kv_size

        return table5_kv_size()
    from prfaas.model.presets import get_model, list_models

    try:
        return LinearKvSize.from_state_spec(get_model(name).spec)
    except UsageError:
        valid = ", ".join(["paper-table5", *list_models()])
        raise UsageError(f"unknown KV profile {name!r}; choose one of: {valid}") from None
