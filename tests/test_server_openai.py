"""The official openai client (sync and async) completes and streams against real uvicorn."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import openai
import pytest

from prfaas.server import FakeBackend, ServerThread, create_app

MODEL = "fake-model"
PROMPT = "alpha beta gamma delta"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    app = create_app(FakeBackend(), model_name=MODEL, max_context_tokens=2048)
    with ServerThread(app) as srv:
        yield srv


@pytest.fixture
def client(server: ServerThread) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as c:
        yield c


def test_completion_non_streaming(client: openai.OpenAI) -> None:
    r = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=6, temperature=0)
    assert r.object == "text_completion" and r.model == MODEL and r.id.startswith("cmpl-")
    assert r.choices[0].text == " alpha beta gamma delta alpha beta"
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (len(PROMPT), 6)
    assert r.usage.total_tokens == len(PROMPT) + 6


def test_completion_streaming_equals_non_streaming(client: openai.OpenAI) -> None:
    full = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=5)
    chunks = list(
        client.completions.create(
            model=MODEL,
            prompt=PROMPT,
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text_chunks = [c for c in chunks if c.choices]
    assert "".join(c.choices[0].text for c in text_chunks) == full.choices[0].text
    assert [c.choices[0].finish_reason for c in text_chunks] == [None] * 4 + ["length"]
    assert len({c.id for c in chunks}) == 1
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5


def test_chat_non_streaming(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL,
        max_tokens=3,
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
    )
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    msg = r.choices[0].message
    assert msg.role == "assistant" and msg.content == " system: be brief"
    assert r.usage is not None and r.usage.completion_tokens == 3


def test_chat_streaming_role_then_content(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL, max_tokens=4, stream=True, messages=[{"role": "user", "content": "x y"}]
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == " user: x y assistant:"
    assert chunks[-1].choices[0].finish_reason == "length"


def test_stop_string_cuts_output(client: openai.OpenAI) -> None:
    r = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, stop=["gam"])
    assert r.choices[0].text == " alpha beta "
    assert r.choices[0].finish_reason == "stop"
    chunks = list(
        client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, stop="gam", stream=True)
    )
    assert "".join(c.choices[0].text for c in chunks) == " alpha beta "
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_async_client_concurrent_streams(server: ServerThread) -> None:
    async def main() -> list[str]:
        async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="x") as c:

            async def one(i: int) -> str:
                stream = await c.completions.create(
                    model=MODEL, prompt=f"w{i} v{i}", max_tokens=3, stream=True
                )
                return "".join([ch.choices[0].text async for ch in stream])

            done = await c.completions.create(model=MODEL, prompt="solo", max_tokens=2)
            assert done.choices[0].text == " solo solo"
            return list(await asyncio.gather(*(one(i) for i in range(8))))

    texts = asyncio.run(main())
    assert texts == [f" w{i} v{i} w{i}" for i in range(8)]


def test_models_and_health(client: openai.OpenAI, server: ServerThread) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL
    health = httpx.get(f"{server.url}/health")
    assert health.status_code == 200 and health.json()["ok"] is True


def test_seeded_sampling_is_reproducible(client: openai.OpenAI) -> None:
    def run(seed: int) -> str:
        r = client.completions.create(
            model=MODEL, prompt=PROMPT, max_tokens=4, temperature=0.7, seed=seed
        )
        return r.choices[0].text

    assert run(1) == run(1)
    assert len({run(s) for s in range(6)}) > 1
