"""Strict readers for TOML tables: every error names the dotted field; unknown keys are rejected."""

from __future__ import annotations

import difflib
import math
from typing import Any

from prfaas.errors import ConfigError

# How alike an unread key must be to a missing one to count as its misspelling: one letter wrong in
# "instances" scores 0.89; distinct real fields such as min_tokens / max_tokens score 0.8.
TYPO_CUTOFF = 0.85


def _one_edit(a: str, b: str) -> bool:
    """b is a with one letter changed, added, dropped, or two neighbours swapped."""
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        swapped = len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]]
        return len(diff) == 1 or (swapped and a[diff[1]] == b[diff[0]])
    short, long = sorted((a, b), key=len)
    return len(long) == len(short) + 1 and any(
        long[:i] + long[i + 1 :] == short for i in range(len(long))
    )


def _is_typo(missing: str, key: str) -> bool:
    # Two-letter keys (a0, a1, a2) are one edit apart from each other, so they never count.
    if len(missing) >= 3 and _one_edit(missing, key):
        return True
    return difflib.SequenceMatcher(None, missing, key).ratio() >= TYPO_CUTOFF


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Table:
    """One TOML table plus the dotted path that names it in error messages."""

    def __init__(self, data: object, path: str, source: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: field '{path}' must be a table")
        self.data: dict[str, Any] = data
        self.path = path
        self.source = source
        self.used: set[str] = set()

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: field '{self.name(key)}' {problem}")

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> object:
        self.used.add(key)
        if key not in self.data:
            raise self._missing(key)
        return self.data[key]

    def _missing(self, key: str) -> ConfigError:
        """A misspelt key is the real problem: name it rather than the field it was meant to be."""
        unread = [k for k in self.data if k not in self.used and isinstance(k, str)]
        for typo in unread:
            if _is_typo(key, typo):
                return self.fail(typo, f"is not a known field (did you mean '{self.name(key)}'?)")
        return self.fail(key, "is missing")

    def number(
        self,
        key: str,
        *,
        default: float | None = None,
        minimum: float = 0.0,
        strict_min: bool = False,
        integer: bool = False,
    ) -> float:
        """A finite number >= minimum (> minimum when strict_min); default if absent."""
        if default is not None and key not in self.data:
            self.used.add(key)
            return default
        value = self.raw(key)
        if not _is_number(value) or not math.isfinite(float(value)):  # type: ignore[arg-type]
            raise self.fail(key, f"must be a number, got {value!r}")
        num = float(value)  # type: ignore[arg-type]
        if integer and num != int(num):
            raise self.fail(key, f"must be a whole number, got {value!r}")
        if num < minimum or (strict_min and num == minimum):
            sign = ">" if strict_min else ">="
            raise self.fail(key, f"must be {sign} {minimum:g}, got {value!r}")
        return num

    def integer(self, key: str, *, default: int | None = None, minimum: int = 0) -> int:
        dflt = None if default is None else float(default)
        return int(self.number(key, default=dflt, minimum=minimum, integer=True))

    def string(self, key: str, *, default: str | None = None) -> str:
        if default is not None and key not in self.data:
            self.used.add(key)
            return default
        value = self.raw(key)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string, got {value!r}")
        return value.strip()

    def numbers(self, key: str, *, minimum: float = 0.0, strict_min: bool = False) -> list[float]:
        value = self.raw(key)
        if not isinstance(value, list) or not value:
            raise self.fail(key, f"must be a non-empty list of numbers, got {value!r}")
        out: list[float] = []
        for i, item in enumerate(value):
            if not _is_number(item) or not math.isfinite(float(item)):
                raise self.fail(f"{key}[{i}]", f"must be a number, got {item!r}")
            if float(item) < minimum or (strict_min and float(item) == minimum):
                raise self.fail(f"{key}[{i}]", f"must be {'>' if strict_min else '>='} {minimum:g}")
            out.append(float(item))
        return out

    def table(self, key: str, *, optional: bool = False) -> Table | None:
        if optional and key not in self.data:
            self.used.add(key)
            return None
        return Table(self.raw(key), self.name(key), self.source)

    def finish(self) -> None:
        """Reject keys that were never read (typos must not be silently ignored)."""
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.fail(unknown[0], "is not a known field")
