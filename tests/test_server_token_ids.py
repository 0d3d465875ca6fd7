"""The token-id extension at the edge: vLLM's `return_token_ids` fields, `resume_token_ids`
continuing the same generation, and the 400s for what cannot be honoured."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from prfaas.server import FakeBackend, create_app
from prfaas.server.backend import CompletionRequest, TokenChunk
from prfaas.server.stops import TokenStopMatcher

MODEL = "fake"
PROMPT = "alpha beta gamma delta epsilon"
PATHS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}


def _client() -> TestClient:
    return TestClient(create_app(FakeBackend(), model_name=MODEL, max_context_tokens=512))


def _body(endpoint: str, **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "max_tokens": 9, "stream": True,
                            "stream_options": {"include_usage": True}, **kw}
    if endpoint == "chat":
        body["messages"] = [{"role": "user", "content": PROMPT}]
    else:
        body["prompt"] = PROMPT
    return body


def _stream(client: TestClient, endpoint: str, **kw: Any) -> list[dict[str, Any]]:
    resp = client.post(PATHS[endpoint], json=_body(endpoint, **kw))
    assert resp.status_code == 200, resp.text
    lines = [line[6:] for line in resp.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def _text(choice: dict[str, Any]) -> str:
    return (choice.get("delta") or {}).get("content") or choice.get("text") or ""


def _collect(chunks: list[dict[str, Any]]) -> tuple[str, list[int], int]:
    text, ids, usage = "", [], 0
    for c in chunks:
        for choice in c["choices"]:
            text += _text(choice)
            ids += choice["token_ids"]
        if c.get("usage"):
            usage = c["usage"]["completion_tokens"]
    return text, ids, usage


@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_return_token_ids_puts_vllms_fields_in_every_chunk(endpoint: str) -> None:
    chunks = _stream(_client(), endpoint, return_token_ids=True)
    first = chunks[0]
    where = first if endpoint == "chat" else first["choices"][0]  # where vLLM puts them
    assert where["prompt_token_ids"] and all(isinstance(t, int) for t in where["prompt_token_ids"])
    assert all("prompt_token_ids" not in c["choices"][0] for c in chunks[1:] if c["choices"])
    text, ids, usage = _collect(chunks)
    assert len(ids) == usage == 9 and len(text.split()) == 9
    plain = _stream(_client(), endpoint)  # not asked: no extra fields, the same text
    assert all("token_ids" not in ch for c in plain for ch in c["choices"])


@pytest.mark.parametrize("endpoint", ["completions", "chat"])
@pytest.mark.parametrize("cut", [1, 4, 8])
def test_a_resumed_request_continues_the_same_generation(endpoint: str, cut: int) -> None:
    client = _client()
    whole, ids, _ = _collect(_stream(client, endpoint, return_token_ids=True))
    head = _collect(_stream(client, endpoint, return_token_ids=True, max_tokens=cut))[0]
    rest, more, usage = _collect(_stream(client, endpoint, return_token_ids=True,
                                         resume_token_ids=ids[:cut]))
    assert head + rest == whole and ids[:cut] + more == ids
    assert usage == 9  # the whole generation's output, resumed tokens included
    full = client.post(PATHS[endpoint], json=_body(endpoint, stream=False, return_token_ids=True,
                                                    resume_token_ids=ids[:cut])).json()
    choice = full["choices"][0]
    assert choice["token_ids"] == more and full["usage"]["completion_tokens"] == 9


def _error(resp: Any) -> dict[str, Any]:
    assert resp.status_code == 400, resp.text
    return dict(resp.json()["error"])


@pytest.mark.parametrize("bad, why", [
    ({"resume_token_ids": [1, 50_000]}, "vocabulary"),
    ({"resume_token_ids": list(range(9))}, "nothing is left"),
    ({"resume_token_ids": [1, -1]}, "resume_token_ids"),
    ({"resume_token_ids": [1, "2"]}, "resume_token_ids"),
    ({"resume_token_ids": [1, True]}, "resume_token_ids"),
    ({"resume_token_ids": 5}, "resume_token_ids"),
    ({"return_token_ids": "yes"}, "return_token_ids"),
])
def test_bad_token_ids_get_an_openai_style_400(bad: dict[str, Any], why: str) -> None:
    err = _error(_client().post("/v1/completions", json=_body("completions", **bad)))
    assert why in err["message"] and err["param"] is not None
    assert err["param"].startswith(next(iter(bad)))


class NoIdsBackend(FakeBackend):
    """A backend that does not take part in the extension (as the vLLM backend)."""

    token_vocab_size = 0  # type: ignore[misc]
    resumes = False  # type: ignore[misc]

    async def generate(self, req: CompletionRequest) -> AsyncIterator[TokenChunk]:
        yield TokenChunk("x", None, "length")


class IdsOnlyBackend(FakeBackend):
    resumes = False  # type: ignore[misc]


def test_a_backend_without_the_extension_answers_400_unsupported() -> None:
    client = TestClient(create_app(NoIdsBackend(), model_name=MODEL, max_context_tokens=512))
    for field, value in (("return_token_ids", True), ("resume_token_ids", [1, 2])):
        err = _error(client.post("/v1/completions", json=_body("completions", **{field: value})))
        assert err["code"] == "unsupported_parameter" and err["param"] == field
    client = TestClient(create_app(IdsOnlyBackend(), model_name=MODEL, max_context_tokens=512))
    assert client.post("/v1/completions",
                       json=_body("completions", return_token_ids=True)).status_code == 200
    err = _error(client.post("/v1/completions", json=_body("completions", resume_token_ids=[3])))
    assert err["param"] == "resume_token_ids" and "cannot resume" in err["message"]


def test_token_stop_matcher_releases_ids_with_their_whole_text() -> None:
    m = TokenStopMatcher(("a b",))
    assert m.feed(" x", 1) == (" x", (1,), False)
    assert m.feed(" alpha", 2) == ("", (), False)  # "a" may begin "a b": the token waits
    assert m.feed(" c", 3) == (" alpha c", (2, 3), False)
    assert m.feed(" bet", 4) == (" bet", (4,), False)
    assert m.feed("", 5) == ("", (5,), False)  # a token with no text of its own still goes out
    assert m.feed(" gamma", 6) == ("", (), False)
    assert m.feed(" b", 7) == (" gamm", (6, 7), True)  # the stop string cuts the text
    m = TokenStopMatcher(())
    assert m.feed("a", 1) == ("a", (1,), False) and m.flush() == ("", ())
