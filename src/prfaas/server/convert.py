"""Validated pydantic bodies -> frozen CompletionRequest, rejecting what we do not support."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from prfaas.server.backend import Backend, ChatMessage, CompletionRequest, render_chat
from prfaas.server.errors import ApiError, unsupported
from prfaas.server.schemas import ChatBody, CompletionBody, _Sampling
from prfaas.server.token_ids import token_id_fields

COMPLETION_DEFAULT_MAX_TOKENS = 16  # OpenAI's documented default for /v1/completions
CHAT_DEFAULT_MAX_TOKENS = 1024  # chat has no documented default; clamped to the free context


@dataclass(frozen=True, slots=True)
class Limits:
    model_name: str
    max_context_tokens: int
    max_tokens: int = 0  # deployment-level cap on max_tokens; 0 = none
    max_prompt_tokens: int = 0  # 0 = only the context window


def _reject_unsupported(body: _Sampling) -> None:
    if body.n not in (None, 1):
        raise unsupported("n", "only n=1 is supported")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(body, name) not in (None, 0, 0.0):
            raise unsupported(name, "penalties are not supported (use 0)")
    if body.logit_bias:
        raise unsupported("logit_bias", "logit bias is not supported")


def _reject_completion_only(body: CompletionBody) -> None:
    if body.logprobs is not None:
        raise unsupported("logprobs", "log probabilities are not supported")
    if body.echo:
        raise unsupported("echo", "echo is not supported")
    if body.best_of not in (None, 1):
        raise unsupported("best_of", "only best_of=1 is supported")
    if body.suffix:
        raise unsupported("suffix", "suffix (insertion) is not supported")


def _reject_chat_only(body: ChatBody) -> None:
    if body.logprobs:
        raise unsupported("logprobs", "log probabilities are not supported")
    if body.top_logprobs is not None:
        raise unsupported("top_logprobs", "log probabilities are not supported")
    for name in ("tools", "functions", "modalities", "prediction", "audio"):
        if getattr(body, name):
            raise unsupported(name, "tools, functions, audio and predictions are not supported")
    if body.tool_choice not in (None, "none"):
        raise unsupported("tool_choice", "tool calling is not supported")
    if body.function_call not in (None, "none"):
        raise unsupported("function_call", "function calling is not supported")
    if body.response_format not in (None, {"type": "text"}):
        raise unsupported("response_format", "only {'type': 'text'} is supported")
    for i, msg in enumerate(body.messages):
        for name in ("tool_calls", "function_call", "audio"):
            if getattr(msg, name):
                raise unsupported(f"messages.{i}.{name}", "tool calls and audio are not supported")


def _check_model(body: _Sampling, limits: Limits) -> None:
    if body.model != limits.model_name:
        raise ApiError(404, f"the model '{body.model}' does not exist; this server serves "
                       f"'{limits.model_name}'", param="model", code="model_not_found")


def _max_tokens(requested: int | None, default: int, prompt_tokens: int, limits: Limits,
                prompt_param: str) -> int:
    if limits.max_prompt_tokens and prompt_tokens > limits.max_prompt_tokens:
        raise ApiError(400, f"the prompt has {prompt_tokens} tokens; this deployment accepts at "
                       f"most {limits.max_prompt_tokens}", param=prompt_param,
                       code="context_length_exceeded")
    if limits.max_tokens and requested is not None and requested > limits.max_tokens:
        raise ApiError(400, f"max_tokens={requested} is over this deployment's cap of "
                       f"{limits.max_tokens}", param="max_tokens", code="invalid_value")
    if limits.max_tokens:
        default = min(default, limits.max_tokens)
    free = limits.max_context_tokens - prompt_tokens
    if free < 1:
        raise ApiError(400, f"the prompt has {prompt_tokens} tokens; this model's context window "
                       f"is {limits.max_context_tokens} tokens and must leave room for at least "
                       "one generated token", param=prompt_param, code="context_length_exceeded")
    if requested is None:
        return min(default, free)
    if requested > free:
        raise ApiError(400, f"max_tokens={requested} plus the prompt's {prompt_tokens} tokens "
                       f"exceeds the context window of {limits.max_context_tokens} tokens",
                       param="max_tokens", code="context_length_exceeded")
    return requested


def _common(body: _Sampling) -> dict[str, Any]:
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    opts = body.stream_options
    return {
        "model": body.model,
        "temperature": 1.0 if body.temperature is None else float(body.temperature),
        "top_p": 1.0 if body.top_p is None else float(body.top_p),
        "seed": body.seed,
        "stop": stop,
        "stream": bool(body.stream),
        "include_usage": bool(opts and opts.include_usage),
        "ignore_eos": bool(body.ignore_eos),
        "arrival_s": time.monotonic(),
    }


def completion_request(body: CompletionBody, backend: Backend, limits: Limits) -> CompletionRequest:
    _check_model(body, limits)
    _reject_unsupported(body)
    _reject_completion_only(body)
    prompt = body.prompt if isinstance(body.prompt, str) else body.prompt[0]
    prompt_tokens = backend.count_tokens(prompt)
    max_tokens = _max_tokens(body.max_tokens, COMPLETION_DEFAULT_MAX_TOKENS, prompt_tokens,
                             limits, "prompt")
    return CompletionRequest(request_id=f"cmpl-{uuid.uuid4().hex}", prompt=prompt, messages=None,
                             max_tokens=max_tokens, prompt_tokens=prompt_tokens, **_common(body),
                             **token_id_fields(body, backend, prompt, max_tokens))


def chat_request(body: ChatBody, backend: Backend, limits: Limits) -> CompletionRequest:
    _check_model(body, limits)
    _reject_unsupported(body)
    _reject_chat_only(body)
    if body.max_tokens is not None and body.max_completion_tokens is not None:
        raise ApiError(400, "set either max_tokens or max_completion_tokens, not both",
                       param="max_completion_tokens", code="invalid_value")
    messages = tuple(ChatMessage(m.role, m.text()) for m in body.messages)
    rendered = render_chat(messages)
    prompt_tokens = backend.count_tokens(rendered)
    requested = body.max_completion_tokens or body.max_tokens
    max_tokens = _max_tokens(requested, CHAT_DEFAULT_MAX_TOKENS, prompt_tokens, limits, "messages")
    return CompletionRequest(request_id=f"chatcmpl-{uuid.uuid4().hex}", prompt=None,
                             messages=messages, max_tokens=max_tokens, prompt_tokens=prompt_tokens,
                             **_common(body),
                             **token_id_fields(body, backend, rendered, max_tokens))
