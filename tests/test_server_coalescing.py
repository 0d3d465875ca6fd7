"""The edge writes the tokens a backend marks `more` (the rest of a decode line) in one write."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from prfaas.server import FakeBackend, create_app
from prfaas.server.backend import CompletionRequest, TokenChunk, Usage


class LineBackend(FakeBackend):
    """Two 'decode lines' of three tokens each, like the router's emulated decode stream."""

    async def generate(self, req: CompletionRequest) -> AsyncIterator[TokenChunk]:
        for line in range(2):
            await asyncio.sleep(0)  # a line arrives
            for i in range(3):
                last = line == 1 and i == 2
                yield TokenChunk(f" t{3 * line + i}", 3 * line + i, "length" if last else None,
                                 Usage(req.prompt_tokens, 6) if last else None, more=i != 2)


async def _writes(body: dict[str, Any]) -> list[bytes]:
    app = create_app(LineBackend(), model_name="fake", max_context_tokens=256)
    raw = msgspec.json.encode(body)
    sent: list[bytes] = []
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v1/completions", "raw_path": b"/v1/completions",
             "query_string": b"", "root_path": "", "server": ("test", 80),
             "client": ("test", 1), "headers": [(b"content-type", b"application/json"),
                                                (b"content-length", str(len(raw)).encode())]}
    messages = [{"type": "http.request", "body": raw, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # the client never hangs up
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            sent.append(message["body"])

    await app(scope, receive, send)
    return sent


def test_a_decode_line_goes_out_in_one_write_with_every_token_its_own_event() -> None:
    body = {"model": "fake", "prompt": "hi", "max_tokens": 6, "stream": True,
            "stream_options": {"include_usage": True}}
    writes = asyncio.run(_writes(body))
    # the first token (the role chunk) alone, the rest of line 1, then line 2 with the usage
    # chunk and [DONE]: 3 writes instead of 8
    assert len(writes) == 3
    events = [e for w in writes for e in w.decode().split("\n\n") if e]
    texts = [msgspec.json.decode(e[6:])["choices"][0]["text"] for e in events[:6]]
    assert texts == [f" t{i}" for i in range(6)]
    assert events[-1] == "data: [DONE]"
    assert msgspec.json.decode(events[-2][6:])["usage"]["completion_tokens"] == 6
