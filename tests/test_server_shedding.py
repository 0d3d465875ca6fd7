"""Load shedding at the edge: 429 + Retry-After with an OpenAI-style body, per-key token rates."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
from starlette.testclient import TestClient

from prfaas.server import FakeBackend, create_app
from prfaas.server.auth import ApiKeys, TokenRate, request_cost
from prfaas.server.backend import CompletionRequest, Overloaded, TokenChunk
from prfaas.server.generation import refusal

KEY = "sk-shed-0123456789abcdef"


class SheddingBackend(FakeBackend):
    async def generate(self, req: CompletionRequest) -> AsyncIterator[TokenChunk]:
        raise Overloaded("the prefill queue is full", 2.3, "node_queue")
        yield TokenChunk("")  # an async generator, like every backend


def _body(**kw: Any) -> dict[str, Any]:
    return {"model": "fake", "prompt": "hello there", "max_tokens": 8, **kw}


def test_a_shed_request_gets_429_retry_after_and_an_openai_error() -> None:
    app = create_app(SheddingBackend(), model_name="fake", max_context_tokens=256)
    client = TestClient(app)
    for stream in (False, True):
        resp = client.post("/v1/completions", json=_body(stream=stream))
        assert resp.status_code == 429
        assert resp.headers["retry-after"] == "3"  # whole seconds, rounded up
        error = resp.json()["error"]
        assert error["type"] == "rate_limit_error" and error["code"] == "server_overloaded"
        assert "queue" in error["message"]


def test_per_key_token_rate_sheds_with_retry_after_and_counts() -> None:
    shed: list[str] = []
    gate = ApiKeys({KEY: "alice"}).wrap(
        create_app(FakeBackend(), model_name="fake", max_context_tokens=256),
        max_body=1 << 16,
        max_concurrent=8,
        tokens_per_s=20.0,
        on_shed=shed.append,
    )
    client = TestClient(gate)
    headers = {"Authorization": f"Bearer {KEY}"}
    codes = [
        client.post("/v1/completions", json=_body(max_tokens=100), headers=headers)
        for _ in range(3)
    ]
    assert codes[0].status_code == 200  # the burst is 10 s worth: 200 tokens
    refused = codes[-1]
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert shed and set(shed) == {"key_rate"}


def test_token_rate_forgets_refilled_clients() -> None:
    now = [0.0]
    rate = TokenRate(10.0, clock=lambda: now[0])
    for i in range(10_000):
        assert rate.take(f"c{i}", 1) == 0.0
    now[0] = 100.0  # everyone refilled: the next new client prunes them
    rate.take("late", 1)
    assert len(rate.buckets) == 1


def test_request_cost_is_body_bytes_plus_max_tokens() -> None:
    assert request_cost(b'{"max_tokens": 50}') == 18 + 50
    assert request_cost(b"not json") == 8
    assert request_cost(b'{"prompt": "x"}') == 15 + 16


class ScreeningBackend(FakeBackend):
    """Refuses before reading the prompt, as the router does when the cluster state proves it."""

    def screen(self) -> None:
        raise Overloaded("the predicted time to first token exceeds the SLO", 4.2, "slo")

    def count_tokens(self, text: str) -> int:
        raise AssertionError("a screened request is never tokenized")


def test_a_screened_request_is_refused_before_its_body_is_read() -> None:
    backend = ScreeningBackend()
    app = create_app(backend, model_name="fake", max_context_tokens=256)
    shed: list[str] = []
    gate = ApiKeys({KEY: "alice"}).wrap(app, max_body=1 << 16, max_concurrent=8,
                                        on_shed=shed.append,
                                        screen=lambda: refusal(backend.screen))
    client = TestClient(gate)
    headers = {"Authorization": f"Bearer {KEY}"}
    assert client.post("/v1/completions", json=_body()).status_code == 401  # keys come first
    for path, body in (("/v1/completions", _body(stream=True)),
                       ("/v1/chat/completions", {"model": "fake", "max_tokens": 8,
                                                 "messages": [{"role": "user", "content": "hi"}]}),
                       ("/v1/completions", "{not json")):  # the body is never read
        resp = client.post(path, content=msgspec.json.encode(body) if isinstance(body, dict)
                           else body, headers=headers)
        assert resp.status_code == 429 and resp.headers["retry-after"] == "5"
        error = resp.json()["error"]
        assert error["code"] == "server_overloaded" and error["type"] == "rate_limit_error"
    assert client.get("/v1/models", headers=headers).status_code == 200  # only POSTs screened
    assert not shed  # the backend's admission control counts its own sheds


def test_a_screen_that_passes_refuses_nothing() -> None:
    assert refusal(lambda: None) is None
