"""OpenAI response objects and SSE chunks, field for field what the official client parses."""

from __future__ import annotations

import time
from typing import Any

import msgspec

from prfaas.server.backend import CompletionRequest, Usage

_encoder = msgspec.json.Encoder()
DONE = b"data: [DONE]\n\n"


def sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + _encoder.encode(obj) + b"\n\n"


def usage_dict(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


class Formatter:
    """Builds the response objects of one request for its endpoint (completions or chat)."""

    def __init__(self, req: CompletionRequest, chat: bool) -> None:
        self.req, self.chat = req, chat
        self.created = int(time.time())
        self.object = "chat.completion" if chat else "text_completion"
        self.chunk_object = "chat.completion.chunk" if chat else "text_completion"
        self._head, self._tail = self._token_template()

    def _token_template(self) -> tuple[bytes, bytes]:
        """The bytes around the text of a plain token chunk: one encode per token, not per dict."""
        marker = "\x00prfaas-text\x00"
        template = self.chunk(marker).decode()
        head, tail = template.split(_encoder.encode(marker).decode()[1:-1], 1)
        # head ends with the opening quote of the string, tail starts with its closing quote
        return head[:-1].encode(), tail[1:].encode()

    def _envelope(self, obj: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.req.request_id, "object": obj, "created": self.created,
                "model": self.req.model, "choices": choices}

    def _ids(self, out: dict[str, Any], choice: dict[str, Any], ids: tuple[int, ...],
             first: bool) -> None:
        """vLLM's return_token_ids fields: the prompt's ids (in the first chunk; on the choice
        for completions, at the top for chat, as vLLM places them) and the chunk's ids."""
        if not self.req.return_token_ids:
            return
        if first:
            (out if self.chat else choice)["prompt_token_ids"] = list(self.req.prompt_token_ids)
        choice["token_ids"] = list(ids)

    def full(self, text: str, finish_reason: str, usage: Usage,
             token_ids: tuple[int, ...] = ()) -> dict[str, Any]:
        """The non-streaming response."""
        if self.chat:
            choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text},
                                      "logprobs": None, "finish_reason": finish_reason}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        out = self._envelope(self.object, [choice])
        self._ids(out, choice, token_ids, True)
        out["usage"] = usage_dict(usage)
        return out

    def chunk(self, text: str, finish_reason: str | None = None, *, first: bool = False,
              token_ids: tuple[int, ...] = ()) -> bytes:
        """One streamed piece; the chat stream announces the assistant role in its first chunk."""
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant", "content": text} if first else (
                {"content": text} if text or finish_reason is None else {})
            choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None,
                                      "finish_reason": finish_reason}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        out = self._envelope(self.chunk_object, [choice])
        self._ids(out, choice, token_ids, first)
        if self.req.include_usage:
            out["usage"] = None
        return sse(out)

    def token(self, text: str, token_ids: tuple[int, ...] = ()) -> bytes:
        """A chunk carrying only text (no role, no finish): the hot path of every stream."""
        if self.req.return_token_ids:
            return self.chunk(text, token_ids=token_ids)
        return self._head + _encoder.encode(text) + self._tail

    def usage_chunk(self, usage: Usage) -> bytes:
        """The extra last chunk sent with stream_options.include_usage (empty choices)."""
        out = self._envelope(self.chunk_object, [])
        out["usage"] = usage_dict(usage)
        return sse(out)
