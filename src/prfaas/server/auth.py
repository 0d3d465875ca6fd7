"""The public listener's gate (pure ASGI): API keys, a body-size cap, per-client concurrency.

A key names a client (`[[security.api_keys]]`, `--api-key` / PRFAAS_API_KEY as client "default").
Only /v1/* needs a key; /health, /metrics and /dashboard are governed by [security] switches.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from prfaas.policy.admission import Bucket, take_tokens

if TYPE_CHECKING:
    from prfaas.server.errors import ApiError

log = logging.getLogger(__name__)
ENV_KEY = "PRFAAS_API_KEY"
BODY_TIMEOUT_S = 30.0  # a request body must arrive within this (slow uploads hold a slot)
BURST_S = 10.0  # a client may spend this many seconds of its token rate at once
MAX_BUCKETS = 10_000  # past this many clients, forget those whose bucket refilled
DEFAULT_COST_TOKENS = 16  # the OpenAI default max_tokens of /v1/completions
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def _error(status: int, message: str, code: str, kind: str = "invalid_request_error") -> bytes:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return json.dumps(body).encode()


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": head + headers})
    await send({"type": "http.response.body", "body": body})


class ApiKeys:
    """key -> client name; empty = no key needed (a warning says so at start)."""

    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = keys

    @classmethod
    def from_config(cls, cfg: Any) -> ApiKeys:
        keys = {k.key: k.name for k in cfg.security.api_keys}
        env = os.environ.get(ENV_KEY, "").strip()
        if env:
            keys[env] = "default"
        return cls(keys)

    def client(self, scope: Scope) -> str | None:
        """The client the request's key names; None if the key is missing or wrong."""
        if not self.keys:
            client = scope.get("client")
            return f"anonymous@{client[0]}" if client else "anonymous"
        auth = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        found = None
        for key, name in self.keys.items():  # compare with every key: no timing hint
            if hmac.compare_digest(key.encode(), token.strip().encode()):
                found = name
        return found

    def wrap(
        self, app: App, max_body: int, max_concurrent: int, tokens_per_s: float = 0.0,
        on_shed: Callable[[str], None] | None = None,
        screen: Callable[[], ApiError | None] | None = None,
    ) -> App:
        """`tokens_per_s`: per-client rate of prompt bytes + max_tokens (0 = unlimited);
        `on_shed(reason)` sees each 429 (prfaas_shed_total); `screen()` may refuse an
        authenticated request before its body is read (the router's admission control)."""
        gate = _Gate(app, self, max_body, max_concurrent, TokenRate(tokens_per_s), on_shed)
        gate.screen = screen
        return gate


class TokenRate:
    """Per-client token buckets (policy.admission.take_tokens) of `rate`/s, a burst of
    BURST_S seconds' worth; full buckets are forgotten, so the map holds only recent clients."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, rate * BURST_S, clock
        self.buckets: dict[str, Bucket] = {}

    def take(self, client: str, cost: float) -> float:
        """0.0 if `client` may spend `cost` now, else the seconds to wait."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        if len(self.buckets) >= MAX_BUCKETS:
            self.buckets = {c: b for c, b in self.buckets.items()
                            if b.tokens + (now - b.time_s) * self.rate < self.burst}
        bucket, wait = take_tokens(self.buckets.get(client), now, cost, self.rate, self.burst)
        self.buckets[client] = bucket
        return wait


def request_cost(body: bytes) -> int:
    """What a request spends of its client's token rate: its body's bytes (at least its prompt's
    tokens with any tokenizer) plus the tokens it may generate."""
    try:
        doc = json.loads(body)
    except ValueError:
        return len(body)
    if not isinstance(doc, dict):
        return len(body)
    asked = doc.get("max_tokens") or doc.get("max_completion_tokens")
    return len(body) + (asked if isinstance(asked, int) and asked > 0 else DEFAULT_COST_TOKENS)


class _Gate:
    def __init__(
        self, app: App, keys: ApiKeys, max_body: int, max_concurrent: int, rate: TokenRate,
        on_shed: Callable[[str], None] | None,
    ) -> None:
        self.app, self.keys = app, keys
        self.max_body, self.max_concurrent = max_body, max_concurrent
        self.rate, self.on_shed = rate, on_shed or (lambda _reason: None)
        self.active: dict[str, int] = {}
        self.screen: Callable[[], ApiError | None] | None = None

    def __getattr__(self, name: str) -> Any:  # state, openapi, ... of the wrapped FastAPI app
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        client = self.keys.client(scope)
        if client is None:
            body = _error(401, "Incorrect or missing API key: send `Authorization: Bearer KEY`",
                          "invalid_api_key")
            await _answer(send, 401, body, [(b"www-authenticate", b"Bearer")])
            return
        if self.active.get(client, 0) >= self.max_concurrent:
            self.on_shed("key_concurrency")
            body = _error(429, f"too many concurrent requests (limit {self.max_concurrent})",
                          "rate_limit_exceeded", "rate_limit_error")
            await _answer(send, 429, body, [(b"retry-after", b"1")])
            return
        post = scope["method"] == "POST"  # the generation endpoints
        refusal = self.screen() if post and self.screen is not None else None
        if refusal is not None:  # answered before the body is read: uvicorn drops the rest
            headers = [(k.lower().encode(), v.encode()) for k, v in (refusal.headers or {}).items()]
            await _answer(send, refusal.status, json.dumps(refusal.body()).encode(), headers)
            return
        # A request holds its slot from its first byte: a slow upload counts as in flight.
        self.active[client] = self.active.get(client, 0) + 1
        try:
            try:
                async with asyncio.timeout(BODY_TIMEOUT_S):
                    read = await self._read_body(scope, receive, send)
            except TimeoutError:
                body = _error(408, f"request body not received within {BODY_TIMEOUT_S:g} s",
                              "request_timeout")
                await _answer(send, 408, body, [(b"connection", b"close")])
                return
            if read is not None and await self._within_rate(client, read[1], send):
                await self.app(scope, read[0], send)
        finally:
            self.active[client] -= 1
            if not self.active[client]:
                del self.active[client]

    async def _within_rate(self, client: str, body: bytes, send: Send) -> bool:
        """Spend the request's cost from its client's bucket, or answer 429 (False)."""
        if self.rate.rate <= 0:
            return True
        wait = self.rate.take(client, request_cost(body))
        if not wait:
            return True
        self.on_shed("key_rate")
        msg = f"token rate over {self.rate.rate:g} per second for this key; retry in {wait:g} s"
        error = _error(429, msg, "rate_limit_exceeded", "rate_limit_error")
        await _answer(send, 429, error, [(b"retry-after", str(int(wait)).encode())])
        return False

    async def _read_body(
        self, scope: Scope, receive: Receive, send: Send
    ) -> tuple[Receive, bytes] | None:
        """Read the whole (bounded) body: a receive that replays it and the body, or None once
        413 was sent."""
        length = dict(scope.get("headers") or []).get(b"content-length")
        too_big = _error(413, f"request body over {self.max_body} bytes", "request_too_large")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await _answer(send, 413, too_big, [(b"connection", b"close")])
            return None
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_body:
                await _answer(send, 413, too_big, [(b"connection", b"close")])
                return None
        sent, whole = False, b"".join(chunks)

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()

        return replay, whole
