"""Shared pytest fixtures: the Kimi trace (bundled; PRFAAS_TRACES_DIR overrides) and hypothesis."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

from prfaas.workload.traces import resolve_trace

# Deterministic property tests: the same examples on every run and in CI (no example database).
settings.register_profile("prfaas", derandomize=True, print_blob=True)
settings.load_profile("prfaas")


@pytest.fixture
def conversation_trace() -> Path:
    """The Kimi conversation trace shipped in the package (it must exist: no skip)."""
    return resolve_trace("kimi-conversation")
