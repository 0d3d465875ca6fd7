"""benchmarks/bench_router_fleet.py still drives the router's real routing path (it broke silently
once when `_place` grew a parameter): a small fleet, both paths, every request timed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_router_fleet.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_router_fleet", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_both_routing_paths_time_every_request() -> None:
    bench = _load()
    for rebuilt in (False, True):
        wall, cpu = bench.run(24, 200.0, 60, rebuilt)
        assert len(wall) == len(cpu) == 60
        assert all(w > 0 for w in wall) and all(c >= 0 for c in cpu)
