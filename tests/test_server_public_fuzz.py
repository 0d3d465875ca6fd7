"""Schemathesis on the public app as the router serves it: API-key gate, body cap, token caps."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from prfaas.server import FakeBackend, SampleDashboardSource, create_app
from prfaas.server.app import PublicOptions
from prfaas.server.auth import ApiKeys

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")

KEY = "sk-fuzz-0123456789abcdef"
APP = ApiKeys({KEY: "fuzzer"}).wrap(
    create_app(FakeBackend(), model_name="fake", max_context_tokens=256,
               dashboard=SampleDashboardSource(),
               public=PublicOptions(max_tokens=32, max_prompt_tokens=200)),
    max_body=16 << 10,
    max_concurrent=4,
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()  # type: ignore[untyped-decorator]
@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_the_gated_public_api_never_answers_5xx(case: Any) -> None:
    response = case.call(headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code < 500, (case.as_curl_command(), response.text[:500])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert {"message", "type", "param", "code"} <= set(error)


def test_without_the_key_every_v1_route_is_401() -> None:
    from starlette.testclient import TestClient

    with TestClient(APP) as client:  # type: ignore[arg-type]
        for path in ("/v1/models", "/v1/completions", "/v1/chat/completions"):
            resp = client.post(path, json={}) if "compl" in path else client.get(path)
            assert resp.status_code == 401 and resp.json()["error"]["code"] == "invalid_api_key"
        assert client.get("/health").status_code == 200  # not behind the key
