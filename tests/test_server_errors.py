"""Bad input -> 4xx with an OpenAI-style body; backend trouble -> 502/503/504, never a hang."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from prfaas.server import (
    BackendError,
    BackendUnavailable,
    ContextLengthExceeded,
    FakeBackend,
    ServerThread,
    Timeouts,
    create_app,
)

MODEL = "m"
CONTEXT = 64


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    app = create_app(FakeBackend(), model_name=MODEL, max_context_tokens=CONTEXT)
    with ServerThread(app) as srv:
        yield srv.url


def assert_error(resp: httpx.Response, status: int, param: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    if param is not None:
        assert err["param"] == param, err
    return dict(err)


def cmpl(**kw: Any) -> dict[str, Any]:
    return {"model": MODEL, "prompt": "hello", **kw}


def chat(**kw: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **kw}


BAD_COMPLETIONS = [
    ({"prompt": "x"}, "model"),
    ({"model": MODEL}, "prompt"),
    (cmpl(max_tokens=-1), "max_tokens"),
    (cmpl(max_tokens=0), "max_tokens"),
    (cmpl(max_tokens=10**15), "max_tokens"),
    (cmpl(max_tokens=CONTEXT), "max_tokens"),  # prompt + max_tokens > context
    (cmpl(max_tokens="5"), "max_tokens"),
    (cmpl(temperature=-0.5), "temperature"),
    (cmpl(temperature=7), "temperature"),
    (cmpl(top_p=0), "top_p"),
    (cmpl(top_p=1.5), "top_p"),
    (cmpl(seed=2**70), "seed"),
    (cmpl(n=2), "n"),
    (cmpl(logprobs=1), "logprobs"),
    (cmpl(echo=True), "echo"),
    (cmpl(best_of=3), "best_of"),
    (cmpl(suffix="tail"), "suffix"),
    (cmpl(presence_penalty=0.5), "presence_penalty"),
    (cmpl(logit_bias={"42": 3}), "logit_bias"),
    (cmpl(stop=["a", "b", "c", "d", "e"]), "stop"),
    (cmpl(stop=""), "stop"),
    (cmpl(prompt=[1, 2, 3]), "prompt"),
    (cmpl(prompt=["a", "b"]), "prompt"),
    (cmpl(prompt="x" * CONTEXT), "prompt"),  # over the context window
    (cmpl(frobnicate=1), "frobnicate"),
    (cmpl(stream="yes"), "stream"),
]

BAD_CHATS = [
    ({"model": MODEL}, "messages"),
    (chat(messages=[]), "messages"),
    (chat(messages=[{"role": "tool", "content": "x"}]), "messages.0.role"),
    (
        chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
        "messages.0.content.0.type",
    ),
    (chat(messages=[{"role": "user", "content": "x" * CONTEXT}]), "messages"),
    (chat(tools=[{"type": "function", "function": {"name": "f"}}]), "tools"),
    (chat(tool_choice="auto"), "tool_choice"),
    (chat(response_format={"type": "json_object"}), "response_format"),
    (chat(logprobs=True), "logprobs"),
    (chat(top_logprobs=2), "top_logprobs"),
    (chat(n=3), "n"),
    (chat(max_tokens=4, max_completion_tokens=4), "max_completion_tokens"),
    (chat(max_completion_tokens=-3), "max_completion_tokens"),
]


@pytest.mark.parametrize(("body", "param"), BAD_COMPLETIONS)
def test_bad_completion_is_400(url: str, body: dict[str, Any], param: str) -> None:
    assert_error(httpx.post(f"{url}/v1/completions", json=body), 400, param)


@pytest.mark.parametrize(("body", "param"), BAD_CHATS)
def test_bad_chat_is_400(url: str, body: dict[str, Any], param: str) -> None:
    assert_error(httpx.post(f"{url}/v1/chat/completions", json=body), 400, param)


@pytest.mark.parametrize("content", [b"{not json", b"", b"[1, 2]", b'"text"', b"null"])
def test_malformed_body_is_400(url: str, content: bytes) -> None:
    resp = httpx.post(
        f"{url}/v1/completions", content=content, headers={"content-type": "application/json"}
    )
    err = assert_error(resp, 400)
    assert err["code"] in {"invalid_json", "invalid_body"}


def test_wrong_content_type_is_400(url: str) -> None:
    resp = httpx.post(
        f"{url}/v1/completions",
        content=b'{"model": "m", "prompt": "x"}',
        headers={"content-type": "text/plain"},
    )
    assert "application/json" in assert_error(resp, 400)["message"]


def test_unknown_model_is_404(url: str) -> None:
    err = assert_error(httpx.post(f"{url}/v1/completions", json=cmpl(model="gpt-9")), 404, "model")
    assert err["code"] == "model_not_found"
    assert_error(httpx.get(f"{url}/v1/models/gpt-9"), 404, "model")


def test_context_errors_name_the_code(url: str) -> None:
    err = assert_error(httpx.post(f"{url}/v1/completions", json=cmpl(prompt="y" * 100)), 400)
    assert err["code"] == "context_length_exceeded" and "64" in err["message"]


def test_unknown_route_and_method(url: str) -> None:
    assert_error(httpx.get(f"{url}/v2/nothing"), 404)
    assert_error(httpx.get(f"{url}/v1/completions"), 405)


def test_openai_client_sees_typed_error(url: str) -> None:
    with (
        openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client,
        pytest.raises(openai.BadRequestError) as info,
    ):
        client.completions.create(model=MODEL, prompt="x", n=2)
    assert info.value.param == "n" and info.value.code == "unsupported_parameter"


# -- backend failures -----------------------------------------------------------------------------


def serve(backend: FakeBackend, **kw: Any) -> ServerThread:
    return ServerThread(create_app(backend, model_name=MODEL, max_context_tokens=4096, **kw))


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (BackendError, 502),
        (BackendUnavailable, 503),
        (RuntimeError, 502),
        (ContextLengthExceeded, 400),
    ],
)
def test_backend_failure_before_first_token(exc: type[Exception], status: int) -> None:
    with serve(FakeBackend(fail_after_tokens=0, fail_with=exc)) as srv:
        for stream in (False, True):
            resp = httpx.post(f"{srv.url}/v1/completions", json=cmpl(stream=stream))
            assert_error(resp, status)


def test_backend_failure_mid_stream_is_reported_in_band() -> None:
    with serve(FakeBackend(fail_after_tokens=2)) as srv:
        resp = httpx.post(f"{srv.url}/v1/completions", json=cmpl(max_tokens=5))
        assert_error(resp, 502)
        with openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0) as client:
            stream = client.completions.create(model=MODEL, prompt="a b", max_tokens=5, stream=True)
            texts = []
            with pytest.raises(openai.APIError, match="backend failed"):
                for chunk in stream:
                    texts.append(chunk.choices[0].text)
    assert texts == [" a", " b"]


def test_hanging_backend_times_out() -> None:
    timeouts = Timeouts(first_token_s=0.2, token_s=0.2)
    with serve(FakeBackend(hang_after_tokens=0), timeouts=timeouts) as srv:
        err = assert_error(httpx.post(f"{srv.url}/v1/completions", json=cmpl(), timeout=30), 504)
        assert err["code"] == "timeout"
    with serve(FakeBackend(hang_after_tokens=1), timeouts=timeouts) as srv:
        resp = httpx.post(f"{srv.url}/v1/completions", json=cmpl(stream=True), timeout=30)
        assert resp.status_code == 200
        assert '"code":"timeout"' in resp.text and "[DONE]" not in resp.text


def test_unhealthy_backend_is_503() -> None:
    with serve(FakeBackend(healthy=False)) as srv:
        resp = httpx.get(f"{srv.url}/health")
        assert resp.status_code == 503 and resp.json()["ok"] is False


def test_client_disconnect_aborts_the_backend() -> None:
    backend = FakeBackend(token_delay_s=0.02)
    with serve(backend) as srv:
        with httpx.stream(
            "POST", f"{srv.url}/v1/completions", json=cmpl(max_tokens=2000, stream=True)
        ) as resp:
            lines = resp.iter_lines()
            assert next(lines).startswith("data: ")
        deadline = time.monotonic() + 20
        while backend.num_aborted == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert backend.num_started == 1 and backend.num_aborted == 1


# A lone surrogate is valid JSON ("\ud800" escapes) but not encodable text: a 400 naming the field.
LONE_SURROGATE = '"abc\\ud800def"'
SURROGATE_BODIES = [
    ("/v1/completions", f'{{"model": "m", "prompt": {LONE_SURROGATE}', "prompt"),
    ("/v1/completions", f'{{"model": "m", "prompt": [{LONE_SURROGATE}]', "prompt.0"),
    ("/v1/completions", f'{{"model": "m", "prompt": "x", "stop": {LONE_SURROGATE}', "stop"),
    (
        "/v1/chat/completions",
        f'{{"model": "m", "messages": [{{"role": "user", "content": {LONE_SURROGATE}}}]',
        "messages.0.content",
    ),
    (
        "/v1/chat/completions",
        '{"model": "m", "messages": [{"role": "user", "content": '
        f'[{{"type": "text", "text": {LONE_SURROGATE}}}]}}]',
        "messages.0.content.0.text",
    ),
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("path", "head", "param"), SURROGATE_BODIES)
def test_lone_surrogate_is_400(url: str, path: str, head: str, param: str, stream: bool) -> None:
    content = f'{head}, "stream": {str(stream).lower()}}}'.encode()
    resp = httpx.post(f"{url}{path}", content=content, headers={"content-type": "application/json"})
    err = assert_error(resp, 400, param)
    assert err["code"] == "invalid_value" and "surrogate" in err["message"]


def test_lone_surrogate_in_a_key_is_400(url: str) -> None:
    content = b'{"model": "m", "prompt": "x", "\\udc00": 1}'
    resp = httpx.post(
        f"{url}/v1/completions", content=content, headers={"content-type": "application/json"}
    )
    err = assert_error(resp, 400)
    assert err["code"] == "invalid_body" and "Unicode" in err["message"]
