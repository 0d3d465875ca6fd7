"""Shared pytest fixtures: the shared-trace location (tests that need it skip with a reason)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# Deterministic property tests: the same examples on every run and in CI (no example database).
settings.register_profile("prfaas", derandomize=True, print_blob=True)
settings.load_profile("prfaas")

REPO_ROOT = Path(__file__).resolve().parents[1]


def traces_dir() -> Path:
    env = os.environ.get("PRFAAS_TRACES_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "traces"


@pytest.fixture
def conversation_trace() -> Path:
    path = traces_dir() / "conversation_trace.jsonl"
    if not path.exists():
        pytest.skip(f"Kimi trace not found at {path} (set PRFAAS_TRACES_DIR)")
    return path
