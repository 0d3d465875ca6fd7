"""OpenAI-style error bodies and the FastAPI handlers that turn every failure into one."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the API answers with `status` and an OpenAI-style body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers  # e.g. Retry-After on a 429

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type=self.type, param=self.param, code=self.code)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def error_body(
    message: str, *, type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def unsupported(param: str, detail: str) -> ApiError:
    return ApiError(400, f"unsupported parameter '{param}': {detail}", param=param,
                    code="unsupported_parameter")


_UNION_BRANCHES = {"str", "int", "float", "bool", "dict", "list", "none"}


def _is_branch(part: Any) -> bool:
    """pydantic names the union member it tried ("str", "list[TextPart]"): not a field."""
    prefixes = ("function-", "constrained-", "lax-", "json-or-python")
    return isinstance(part, str) and (
        part in _UNION_BRANCHES or "[" in part or part.startswith(prefixes)
    )


def _param_of(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc[1:] if not _is_branch(p)]  # loc[0] is "body"
    return ".".join(parts) or None


def _body_error(err: dict[str, Any]) -> ApiError:
    if err.get("type") == "json_invalid":
        detail = (err.get("ctx") or {}).get("error", "malformed JSON")
        return ApiError(400, f"could not parse the JSON body: {detail}", code="invalid_json")
    if err.get("type") == "missing":
        return ApiError(400, "the request body is empty; send a JSON object", code="invalid_body")
    if err.get("type") == "string_unicode":  # a key holding a lone surrogate ("\ud800")
        return ApiError(400, "a key of the request body is not valid Unicode (lone surrogate)",
                        code="invalid_body")
    if isinstance(err.get("input"), bytes):
        return ApiError(400, "the request body must be JSON (Content-Type: application/json)",
                        code="invalid_body")
    return ApiError(400, "the request body must be a JSON object", code="invalid_body")


def validation_error(errors: list[dict[str, Any]]) -> ApiError:
    """The most specific pydantic error (the deepest location) as an OpenAI-style 400."""
    if not errors:
        return ApiError(400, "invalid request body")
    err = max(errors, key=lambda e: len(e.get("loc", ())))
    kind, param = err.get("type", ""), _param_of(tuple(err.get("loc", ())))
    if kind == "json_invalid" or param is None:
        return _body_error(err)
    if kind == "missing":
        return ApiError(400, f"missing required parameter '{param}'", param=param,
                        code="missing_required_parameter")
    if kind == "extra_forbidden":
        return ApiError(400, f"unrecognized request argument supplied: {param}", param=param,
                        code="unknown_parameter")
    return ApiError(400, f"invalid value for '{param}': {err.get('msg', kind)}", param=param,
                    code="invalid_value")


def install_error_handlers(
    app: FastAPI, on_error: Callable[[str, int], None] | None = None
) -> None:
    """OpenAI-style bodies for every error; `on_error(path, status)` sees each API error."""

    def answer(request: Request, err: ApiError) -> JSONResponse:
        if on_error is not None:
            on_error(request.url.path, err.status)
        return err.response()

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return answer(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return answer(request, validation_error(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        body = error_body(str(exc.detail), type=kind, code=str(exc.status_code))
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _bug(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in the HTTP layer")
        body = error_body(f"internal error: {type(exc).__name__}", type="server_error",
                          code="internal_error")
        return JSONResponse(body, status_code=500)
