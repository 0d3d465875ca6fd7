"""The Backend protocol the HTTP edge calls: request/chunk types, typed errors, a FakeBackend.

Conventions every backend follows:
- `generate(req)` is an async iterator of `TokenChunk`s, one per generated token. The last chunk
  carries `finish_reason` ("stop" or "length") and `usage`; a chunk may have empty `text`.
- Client-caused problems raise `prfaas.errors.UsageError` subclasses (e.g. `ContextLengthExceeded`):
  the server answers 400. Backend trouble raises `BackendUnavailable` (503) or `BackendError` (502);
  admission control raises `Overloaded` (429 with Retry-After) before the first chunk;
  any other exception also becomes 502. Both may be raised before the first chunk or mid-stream.
- Closing the iterator early (`aclose()`) means the client went away or a stop string matched: the
  backend should abort the request and free its resources.
- `count_tokens(text)` is the backend's tokenizer length; the server counts chat prompts on
  `render_chat(messages)`; a backend with its own chat template raises ContextLengthExceeded.
- The token-id extension (docs/reliability.md, "Resuming a cut stream") is opt-in per backend:
  one with `token_vocab_size > 0` and `tokenize(text)` serves `return_token_ids` (every chunk
  has its `token_id`); one with `resumes = True` also serves `resume_token_ids`: it continues
  the same generation after those output tokens (max_tokens counts them; the final usage too).
  Other backends answer both with 400.
"""

from __future__ import annotations

import asyncio
import hashlib
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from prfaas.errors import UsageError

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str
    content: str


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """One validated request, endpoint-independent; exactly one of prompt / messages is set."""

    request_id: str
    model: str
    prompt: str | None
    messages: tuple[ChatMessage, ...] | None
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False
    ignore_eos: bool = False
    prompt_tokens: int = 0  # the server's count_tokens of the (rendered) prompt
    arrival_s: float = 0.0  # time.monotonic() when the server received the request
    return_token_ids: bool = False  # vLLM's extension: token ids in every chunk
    prompt_token_ids: tuple[int, ...] = ()  # the prompt's ids, when return_token_ids
    resume_token_ids: tuple[int, ...] = ()  # output the client has: generate what follows it

    @property
    def prompt_text(self) -> str:
        """The text the model continues: the prompt, or the chat rendered by `render_chat`."""
        if self.prompt is not None:
            return self.prompt
        return render_chat(self.messages or ())


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class TokenChunk:
    text: str
    token_id: int | None = None
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    # another chunk follows at once (the rest of a decode line): the edge may send both in one
    # write, and waits for it with no timeout
    more: bool = False


class BackendError(Exception):
    """The backend failed while serving a valid request (HTTP 502)."""


class BackendUnavailable(BackendError):
    """No capacity or no healthy worker right now; the client may retry (HTTP 503)."""


class Overloaded(BackendUnavailable):
    """Admission control shed the request (HTTP 429 with Retry-After): retry later."""

    def __init__(self, message: str, retry_after_s: float, reason: str) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.reason = reason


class ContextLengthExceeded(UsageError):
    """The prompt (plus max_tokens) does not fit the model's context window (HTTP 400)."""


@runtime_checkable
class Backend(Protocol):
    def generate(self, req: CompletionRequest) -> AsyncIterator[TokenChunk]:
        """Stream the completion of `req`, one chunk per token (an async generator)."""
        ...

    def count_tokens(self, text: str) -> int: ...

    async def health(self) -> dict[str, Any]:
        """A JSON-able status; a key "ok": False makes /health answer 503."""
        ...


def render_chat(messages: Sequence[ChatMessage]) -> str:
    """Default plain-text chat template: a `role: content` line per message, then `assistant:`."""
    lines = [f"{m.role}: {m.content}" for m in messages]
    lines.append("assistant:")
    return "\n".join(lines)


@dataclass(slots=True)
class FakeBackend:
    """Deterministic echo-ish backend: token i is the prompt's word i (cyclic); byte tokenizer.

    One token = one UTF-8 byte for `count_tokens` (the bench's prompt convention). Failure knobs let
    tests drive the error paths: `fail_after_tokens` raises `fail_with` after that many tokens
    (0 = before the first), `hang_after_tokens` blocks forever there (the server's timeouts fire).
    """

    token_delay_s: float = 0.0
    first_token_delay_s: float = 0.0
    eos_after_tokens: int | None = None
    fail_after_tokens: int | None = None
    fail_with: type[Exception] = BackendError
    hang_after_tokens: int | None = None
    healthy: bool = True
    num_started: int = 0
    num_aborted: int = 0
    token_vocab_size: ClassVar[int] = 50_000
    resumes: ClassVar[bool] = True

    def count_tokens(self, text: str) -> int:
        return len(text.encode("utf-8"))

    def tokenize(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    async def health(self) -> dict[str, Any]:
        return {"ok": self.healthy, "backend": "fake"}

    def words_for(self, req: CompletionRequest) -> list[str]:
        words = req.prompt_text.split() or ["ok"]
        if req.temperature > 0 and req.seed is not None:
            # seeded 'sampling': a rotation, so a seed changes the output yet repeats exactly
            digest = hashlib.sha256(f"{req.seed}".encode()).digest()
            shift = int.from_bytes(digest[:4], "big") % len(words)
            words = words[shift:] + words[:shift]
        return words

    async def generate(self, req: CompletionRequest) -> AsyncIterator[TokenChunk]:
        self.num_started += 1
        words = self.words_for(req)
        limit = req.max_tokens
        if self.eos_after_tokens is not None and not req.ignore_eos:
            limit = min(limit, self.eos_after_tokens)
        finish: FinishReason = "length" if limit == req.max_tokens else "stop"
        done = False
        try:
            for i in range(len(req.resume_token_ids), limit):  # a resumed request goes on
                await self._pace(i)
                word = words[i % len(words)]
                last = i == limit - 1
                yield TokenChunk(
                    text=f" {word}",
                    token_id=zlib.crc32(word.encode()) % self.token_vocab_size,
                    finish_reason=finish if last else None,
                    usage=Usage(req.prompt_tokens, limit) if last else None,
                )
            if limit <= len(req.resume_token_ids):
                yield TokenChunk("", None, finish, Usage(req.prompt_tokens, limit))
            done = True
        finally:
            if not done:
                self.num_aborted += 1

    async def _pace(self, i: int) -> None:
        if i == self.fail_after_tokens:
            raise self.fail_with(f"fake backend failure after {i} tokens")
        if i == self.hang_after_tokens:
            await asyncio.Event().wait()
        delay = self.first_token_delay_s if i == 0 else self.token_delay_s
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            await asyncio.sleep(0)  # yield to the loop like a real backend would
