"""Drive one backend generation: timeouts, stop strings, usage, edge metrics, error mapping."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from prfaas.errors import UsageError
from prfaas.server.backend import (
    Backend,
    BackendUnavailable,
    CompletionRequest,
    ContextLengthExceeded,
    FinishReason,
    Overloaded,
    TokenChunk,
    Usage,
)
from prfaas.server.errors import ApiError
from prfaas.server.metrics import ServerMetrics
from prfaas.server.stops import StopMatcher, TokenStopMatcher

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Timeouts:
    first_token_s: float = 300.0  # covers queueing + a long prefill
    token_s: float = 60.0  # longest allowed gap between two tokens


@dataclass(frozen=True, slots=True)
class Event:
    """A piece of output; the last event of a generation has finish_reason and usage set."""

    text: str
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    token_ids: tuple[int, ...] = ()  # the ids of the tokens whose text this is (return_token_ids)
    more: bool = False  # another event follows at once: hold this one's bytes for one write


def backend_failure(exc: BaseException) -> ApiError:
    """Map an exception raised by a backend to the API error the client sees."""
    if isinstance(exc, UsageError):
        code = "context_length_exceeded" if isinstance(exc, ContextLengthExceeded) else None
        return ApiError(400, str(exc), code=code)
    if isinstance(exc, TimeoutError):
        return ApiError(504, "the backend did not produce a token in time", type="server_error",
                        code="timeout")
    if isinstance(exc, Overloaded):
        retry = str(max(1, math.ceil(exc.retry_after_s)))
        return ApiError(429, f"overloaded: {exc}; retry after {retry} s", type="rate_limit_error",
                        code="server_overloaded", headers={"Retry-After": retry})
    if isinstance(exc, BackendUnavailable):
        return ApiError(503, f"backend unavailable: {exc}", type="server_error",
                        code="backend_unavailable")
    log.warning("backend failed: %s: %s", type(exc).__name__, exc)
    return ApiError(502, f"backend failed: {type(exc).__name__}: {scrub(str(exc))}",
                    type="server_error", code="backend_error")


def refusal(screen: Callable[[], None]) -> ApiError | None:
    """The 429 for a request that `screen()` refuses (raising Overloaded) before its body is even
    read: the router's admission control, so a refusal costs no work that grows with the prompt."""
    try:
        screen()
    except Overloaded as exc:
        return backend_failure(exc)
    return None


_ADDRESS = re.compile(r"(?:[a-z]+://)?(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-f:]+\]|localhost)(?::\d+)?\S*",
                      re.IGNORECASE)


def scrub(message: str) -> str:
    """The message without network addresses (clients never learn the cluster's layout)."""
    return _ADDRESS.sub("<internal>", message)


class Generation:
    """One request's token stream as Events; `events()` raises ApiError on any failure."""

    def __init__(self, backend: Backend, req: CompletionRequest, timeouts: Timeouts,
                 metrics: ServerMetrics | None, endpoint: str) -> None:
        self.req, self.timeouts, self.metrics, self.endpoint = req, timeouts, metrics, endpoint
        self._chunks = backend.generate(req)
        self._stop = StopMatcher(req.stop)
        # with token ids, text goes out in whole tokens (see TokenStopMatcher)
        self._ids = TokenStopMatcher(req.stop) if req.return_token_ids else None
        self.num_tokens = 0
        self._first_s: float | None = None
        self._last_s = 0.0
        self._more = False  # the last chunk promised another at once

    async def _next(self) -> TokenChunk | None:
        timeout = self.timeouts.first_token_s if self.num_tokens == 0 else self.timeouts.token_s
        try:
            if self._more:  # already here: no timer to arm and cancel (~10 us a token)
                return await anext(self._chunks)
            # asyncio.timeout, not wait_for: wait_for wraps each token in a new Task on 3.11
            async with asyncio.timeout(timeout):
                return await anext(self._chunks)
        except StopAsyncIteration:
            return None
        except Exception as exc:
            err = backend_failure(exc)
            log.warning("%s: %s", self.req.request_id, err.message)
            raise err from exc

    def _tick(self) -> None:
        now = time.monotonic()
        if self._first_s is None:
            self._first_s = now
            if self.metrics is not None:
                self.metrics.observe_ttft(now - self.req.arrival_s)
        self._last_s = now
        self.num_tokens += 1

    async def events(self) -> AsyncGenerator[Event, None]:
        try:
            while (chunk := await self._next()) is not None:
                self._more = chunk.more
                self._tick()
                text, ids, stopped = self._feed(chunk)
                if stopped:
                    yield Event(text, "stop", self._usage(None), ids)
                    return
                if chunk.finish_reason is not None:
                    rest, more = self._flush()
                    yield Event(text + rest, chunk.finish_reason, self._usage(chunk.usage),
                                ids + more)
                    return
                if text or ids:
                    yield Event(text, token_ids=ids, more=chunk.more)
            # a backend that ends without a finish_reason ran out of tokens: treat it as "stop"
            rest, more = self._flush()
            yield Event(rest, "stop", self._usage(None), more)
        finally:
            await self.close()

    def _feed(self, chunk: TokenChunk) -> tuple[str, tuple[int, ...], bool]:
        if self._ids is not None:
            return self._ids.feed(chunk.text, chunk.token_id)
        if not self.req.stop:
            return chunk.text, (), False
        text, stopped = self._stop.feed(chunk.text)
        return text, (), stopped

    def _flush(self) -> tuple[str, tuple[int, ...]]:
        return self._ids.flush() if self._ids is not None else (self._stop.flush(), ())

    def _usage(self, reported: Usage | None) -> Usage:
        """Usage of the whole generation: a resumed request's output tokens count too."""
        self._observe_tpot()
        n = len(self.req.resume_token_ids) + self.num_tokens
        if reported is not None and reported.completion_tokens == n:
            return reported
        if reported is not None:  # trust the backend's prompt count, not its token count
            return Usage(reported.prompt_tokens, n, reported.cached_tokens)
        return Usage(self.req.prompt_tokens, n)

    def _observe_tpot(self) -> None:
        if self.metrics is not None and self._first_s is not None and self.num_tokens > 1:
            self.metrics.observe_tpot((self._last_s - self._first_s) / (self.num_tokens - 1))

    async def close(self) -> None:
        """Stop the backend (early exit, error or client gone); safe to call twice."""
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception:  # the backend already failed; its error was reported
                log.debug("backend aclose failed", exc_info=True)
