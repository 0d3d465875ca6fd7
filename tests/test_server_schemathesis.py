"""Fuzz the app's own OpenAPI spec with schemathesis (bounded, derandomised): never a 5xx."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from prfaas.server import FakeBackend, SampleDashboardSource, create_app

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")

APP = create_app(
    FakeBackend(), model_name="fake", max_context_tokens=256, dashboard=SampleDashboardSource()
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()  # type: ignore[untyped-decorator]
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_fuzzed_requests_never_5xx(case: Any) -> None:
    response = case.call()
    assert response.status_code < 500, (case.as_curl_command(), response.text[:500])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert {"message", "type", "param", "code"} <= set(error)
