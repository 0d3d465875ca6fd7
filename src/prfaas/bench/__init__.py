"""Open-loop load generator against an OpenAI-compatible URL (prompts synthesised from hash_ids)."""

from prfaas.bench.compare import run_compare
from prfaas.bench.run import BenchSettings, run_bench
from prfaas.bench.workload import PlannedRequest, Shaping

__all__ = ["BenchSettings", "PlannedRequest", "Shaping", "run_bench", "run_compare"]
