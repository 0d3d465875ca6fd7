"""create_app: the OpenAI-compatible HTTP edge over any Backend, plus /metrics and /dashboard."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from prfaas import __version__
from prfaas.security.asgi import CallerGone, unless_gone
from prfaas.server.backend import Backend, CompletionRequest
from prfaas.server.convert import Limits, chat_request, completion_request
from prfaas.server.dashboard import DashboardSource, dashboard_html, empty_snapshot
from prfaas.server.errors import ApiError, install_error_handlers
from prfaas.server.generation import Event, Generation, Timeouts
from prfaas.server.metrics import ServerMetrics
from prfaas.server.openai_format import DONE, Formatter, sse
from prfaas.server.schemas import ChatBody, CompletionBody

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PublicOptions:
    """What the public listener offers besides the OpenAI API, and the deployment's caps."""

    metrics: bool = True
    dashboard: bool = True
    max_tokens: int = 0  # cap on a request's max_tokens; 0 = only the context window
    max_prompt_tokens: int = 0  # 0 = only the context window

HEALTH_TIMEOUT_S = 5.0
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class _Edge:
    """Serves one request end to end and keeps the edge metrics honest on every exit path."""

    def __init__(self, backend: Backend, metrics: ServerMetrics, timeouts: Timeouts) -> None:
        self.backend, self.metrics, self.timeouts = backend, metrics, timeouts

    def _finish(self, endpoint: str, req: CompletionRequest, status: str) -> None:
        self.metrics.count_request(endpoint, status)
        self.metrics.in_flight.dec()
        if status == "200":
            self.metrics.observe_e2e(time.monotonic() - req.arrival_s)

    async def serve(self, req: CompletionRequest, endpoint: str, chat: bool,
                    request: Request | None = None) -> Response:
        """`request`: watched for the client hanging up before the reply starts (its work is
        then cancelled everywhere; a started stream is cancelled by the streaming response)."""
        self.metrics.in_flight.inc()
        events = Generation(self.backend, req, self.timeouts, self.metrics, endpoint).events()
        fmt = Formatter(req, chat)
        try:
            first = await unless_gone(request, anext(events))
            if req.stream:
                body = self._stream(first, events, fmt, endpoint)
                return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)
            response = await unless_gone(request, self._collect(first, events, fmt))
        except ApiError:  # counted by the error handler, like every other 4xx/5xx answer
            self.metrics.in_flight.dec()
            raise
        except CallerGone:
            self._finish(endpoint, req, "cancelled")
            return Response(status_code=499)  # nobody reads it
        except BaseException:
            self._finish(endpoint, req, "cancelled")
            await events.aclose()
            raise
        self._finish(endpoint, req, "200")
        return JSONResponse(response)

    @staticmethod
    async def _collect(
        first: Event, events: AsyncGenerator[Event, None], fmt: Formatter
    ) -> dict[str, Any]:
        parts, ids, last = [first.text], list(first.token_ids), first
        while last.finish_reason is None:
            last = await anext(events)
            parts.append(last.text)
            ids.extend(last.token_ids)
        assert last.usage is not None  # the final event always carries usage
        return fmt.full("".join(parts), last.finish_reason, last.usage, tuple(ids))

    async def _stream(self, first: Event, events: AsyncGenerator[Event, None], fmt: Formatter,
                      endpoint: str) -> AsyncIterator[bytes]:
        status: str | None = "cancelled"
        event = first
        held: list[bytes] = []  # events that arrived together go out in one write
        try:
            yield fmt.chunk(event.text, event.finish_reason, first=True,
                            token_ids=event.token_ids)
            while event.finish_reason is None:
                event = await anext(events)
                if event.finish_reason is None:
                    held.append(fmt.token(event.text, event.token_ids))
                    if not event.more:
                        yield b"".join(held)
                        held.clear()
                else:
                    held.append(fmt.chunk(event.text, event.finish_reason,
                                          token_ids=event.token_ids))
            # account before the last bytes go out, so a client that saw [DONE] sees the metrics
            status = None
            self._finish(endpoint, fmt.req, "200")
            if fmt.req.include_usage and event.usage is not None:
                held.append(fmt.usage_chunk(event.usage))
            yield b"".join(held) + DONE
        except ApiError as err:  # headers are gone: report in-band, as OpenAI does
            status = None
            self._finish(endpoint, fmt.req, "stream_error")
            yield b"".join(held) + sse(err.body())
        finally:
            await events.aclose()
            if status is not None:
                self._finish(endpoint, fmt.req, status)


def create_app(
    backend: Backend,
    *,
    model_name: str,
    max_context_tokens: int,
    metrics: ServerMetrics | None = None,
    dashboard: DashboardSource | None = None,
    timeouts: Timeouts | None = None,
    public: PublicOptions | None = None,
) -> FastAPI:
    """The OpenAI-compatible app. Edge metrics go to `metrics` (a private registry when None)."""
    public = public or PublicOptions()
    app = FastAPI(title="prfaas", version=__version__,
                  description="OpenAI-compatible API of a PrfaaS-PD deployment.")
    metrics = metrics if metrics is not None else ServerMetrics()
    limits = Limits(model_name=model_name, max_context_tokens=max_context_tokens,
                    max_tokens=public.max_tokens, max_prompt_tokens=public.max_prompt_tokens)
    edge = _Edge(backend, metrics, timeouts or Timeouts())
    app.state.backend, app.state.metrics, app.state.limits = backend, metrics, limits
    install_error_handlers(app, on_error=lambda path, status: _count_error(metrics, path, status))

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionBody, request: Request) -> Response:
        req = completion_request(body, backend, limits)
        return await edge.serve(req, "completions", False, request)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatBody, request: Request) -> Response:
        return await edge.serve(chat_request(body, backend, limits), "chat", True, request)

    _add_info_routes(app, backend, metrics, limits, dashboard, public)
    _pin_model_in_openapi(app, model_name)
    return app


def _pin_model_in_openapi(app: FastAPI, model_name: str) -> None:
    """The spec names the one model served (clients and fuzzers then send valid requests)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = build()
            for name in ("CompletionBody", "ChatBody"):
                props = spec.get("components", {}).get("schemas", {}).get(name, {})
                if "model" in props.get("properties", {}):
                    props["properties"]["model"]["enum"] = [model_name]
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


ENDPOINTS = {"/v1/completions": "completions", "/v1/chat/completions": "chat"}


def _count_error(metrics: ServerMetrics, path: str, status: int) -> None:
    if path in ENDPOINTS:
        metrics.count_request(ENDPOINTS[path], str(status))


def _model_card(limits: Limits) -> dict[str, Any]:
    return {"id": limits.model_name, "object": "model", "created": 0, "owned_by": "prfaas",
            "max_model_len": limits.max_context_tokens}


def _add_info_routes(app: FastAPI, backend: Backend, metrics: ServerMetrics, limits: Limits,
                     dashboard: DashboardSource | None, public: PublicOptions) -> None:
    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(limits)]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        if model_id != limits.model_name:
            raise ApiError(404, f"the model '{model_id}' does not exist", param="model",
                           code="model_not_found")
        return _model_card(limits)

    @app.get("/health", response_model=None)
    async def health() -> JSONResponse:
        try:
            status = await asyncio.wait_for(backend.health(), HEALTH_TIMEOUT_S)
        except Exception as exc:  # a sick backend is reported, not raised
            status = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return JSONResponse(status, status_code=200 if status.get("ok", True) else 503)

    if public.metrics:
        @app.get("/metrics", response_model=None)
        async def prometheus() -> Response:
            body, content_type = metrics.exposition()
            return Response(body, media_type=content_type)

    if public.dashboard:
        _add_dashboard(app, limits, dashboard)


def _add_dashboard(app: FastAPI, limits: Limits, dashboard: DashboardSource | None) -> None:
    @app.get("/dashboard", response_class=HTMLResponse)
    async def dashboard_page() -> HTMLResponse:
        return HTMLResponse(dashboard_html())

    @app.get("/dashboard/state")
    async def dashboard_state() -> dict[str, Any]:
        state = dashboard.snapshot() if dashboard is not None else empty_snapshot(time.time())
        return {"model": limits.model_name, **state}
