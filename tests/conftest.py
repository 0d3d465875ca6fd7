"""Shared pytest fixtures: the Kimi trace (bundled; PRFAAS_TRACES_DIR overrides) and hypothesis."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
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


ETCD_MISSING = shutil.which("etcd") is None
NO_ETCD = "etcd server binary was not found"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Live deployments need etcd (their membership): where the binary is missing, a test that
    failed for that reason alone (in-process or in a `prfaas up` it ran) is reported skipped."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if ETCD_MISSING and report.failed and NO_ETCD in str(report.longrepr):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0,
                           "Skipped: needs etcd (apt-get install etcd-server)")
