"""Structural comparison for recorded fixtures: exact on ids and integers, tolerant on floats.

Floats computed on another machine (another CPU, BLAS or libm) may differ in the last bits, so a
recorded float is compared with a relative tolerance; everything else must be equal.
"""

from __future__ import annotations

import math
from dataclasses import fields, is_dataclass
from typing import Any

REL_TOL = 1e-9
ABS_TOL = 1e-12


def close_mismatch(got: Any, want: Any, path: str = "$", rel: float = REL_TOL) -> str | None:
    """Where `got` and `want` differ beyond the float tolerance, or None when they match."""
    if isinstance(got, bool) or isinstance(want, bool):
        return None if got is want else f"{path}: {got!r} != {want!r}"
    if isinstance(got, float) or isinstance(want, float):
        numbers = isinstance(got, int | float) and isinstance(want, int | float)
        if numbers and (
            math.isclose(got, want, rel_tol=rel, abs_tol=ABS_TOL)
            or (math.isnan(got) and math.isnan(want))
        ):
            return None
        return f"{path}: {got!r} != {want!r} (rel tol {rel})"
    if is_dataclass(got) and not isinstance(got, type):
        if type(got) is not type(want):
            return f"{path}: type {type(got).__name__} != {type(want).__name__}"
        for f in fields(got):
            sub_path = f"{path}.{f.name}"
            bad = close_mismatch(getattr(got, f.name), getattr(want, f.name), sub_path, rel)
            if bad:
                return bad
        return None
    if isinstance(got, dict) and isinstance(want, dict):
        if set(got) != set(want):
            return f"{path}: keys {sorted(got)} != {sorted(want)}"
        for key in got:
            bad = close_mismatch(got[key], want[key], f"{path}[{key!r}]", rel)
            if bad:
                return bad
        return None
    if isinstance(got, list | tuple) and isinstance(want, list | tuple):
        if len(got) != len(want):
            return f"{path}: length {len(got)} != {len(want)}"
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            bad = close_mismatch(a, b, f"{path}[{i}]", rel)
            if bad:
                return bad
        return None
    return None if got == want else f"{path}: {got!r} != {want!r}"


def assert_close(got: Any, want: Any, rel: float = REL_TOL) -> None:
    """Assert structural equality with floats compared to a relative tolerance."""
    bad = close_mismatch(got, want, rel=rel)
    assert bad is None, bad
