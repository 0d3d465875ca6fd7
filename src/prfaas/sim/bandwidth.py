"""Bandwidth schedules: windows (start_s, end_s, factor) scaling the link's nominal capacity."""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

from prfaas.errors import ConfigError, UsageError


@dataclass(frozen=True, slots=True)
class BandwidthSchedule:
    """Non-overlapping windows; outside every window the factor is 1.0."""

    windows: tuple[tuple[float, float, float], ...] = ()

    def __post_init__(self) -> None:
        last_end = -math.inf
        for start, end, factor in sorted(self.windows):
            if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
                raise ConfigError(
                    f"bandwidth window needs 0 <= start_s < end_s, got {start}, {end}"
                )
            if not (math.isfinite(factor) and factor >= 0):
                raise ConfigError(f"bandwidth factor must be >= 0, got {factor}")
            if start < last_end:
                raise ConfigError(f"bandwidth windows overlap at {start} s")
            last_end = end

    def factor_at(self, t_s: float) -> float:
        for start, end, factor in self.windows:
            if start <= t_s < end:
                return factor
        return 1.0

    def change_points(self) -> list[tuple[float, float]]:
        """(time, factor from then on), ascending."""
        out: list[tuple[float, float]] = []
        for start, end, factor in sorted(self.windows):
            out.append((start, factor))
            out.append((end, 1.0))
        return out


def _window(item: object, where: str) -> tuple[float, float, float]:
    if isinstance(item, dict):
        missing = {"start_s", "end_s", "factor"} - item.keys()
        extra = item.keys() - {"start_s", "end_s", "factor"}
        if missing or extra:
            raise ConfigError(f"{where}: needs exactly start_s, end_s, factor (got {sorted(item)})")
        values = [item["start_s"], item["end_s"], item["factor"]]
    elif isinstance(item, list | tuple) and len(item) == 3:
        values = list(item)
    else:
        raise ConfigError(f"{where}: expected [start_s, end_s, factor] or a table with those keys")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise ConfigError(f"{where}: start_s, end_s and factor must be numbers")
    return float(values[0]), float(values[1]), float(values[2])


def load_schedule(path: str | Path) -> BandwidthSchedule:
    """Read a schedule from JSON (a list, or {"windows": [...]}) or TOML ([[windows]] tables)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read bandwidth schedule {p}: {exc.strerror or exc}") from None
    try:
        doc: object = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{p}: cannot parse bandwidth schedule: {exc}") from None
    items = doc.get("windows") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise ConfigError(f"{p}: expected a list of windows (or a 'windows' key holding one)")
    windows = tuple(_window(item, f"{p}: window {i + 1}") for i, item in enumerate(items))
    try:
        return BandwidthSchedule(windows)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
