"""Pydantic request bodies of the OpenAI API subset we serve (pydantic stops in this package)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# Bounds that reject absurd values at the edge; the context window bounds max_tokens later.
MAX_TOKENS_CAP = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_STOP_STRINGS = 4
MAX_RESUME_TOKENS = 1 << 20  # a resumed request's output so far (the workers' bound too)


def _encodable(text: str) -> str:
    """JSON may escape a lone surrogate ("\\ud800"); no tokenizer or UTF-8 stream can carry it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"contains a lone surrogate (U+{ord(text[exc.start]):04X}) at character {exc.start}; "
            "text must be valid Unicode"
        ) from None
    return text


# Every string the server tokenizes, renders or echoes back.
Text = Annotated[str, AfterValidator(_encodable)]
StopString = Annotated[Text, Field(min_length=1, max_length=256)]
MaxTokens = Annotated[int, Field(ge=1, le=MAX_TOKENS_CAP)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]
TokenId = Annotated[int, Field(ge=0, le=2**32 - 1)]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    include_usage: bool | None = None


class _Sampling(BaseModel):
    """Fields shared by both endpoints; unsupported ones are declared so their 400 names them."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: Text
    max_tokens: MaxTokens | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    seed: Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)] | None = None
    stop: StopString | Annotated[list[StopString], Field(max_length=MAX_STOP_STRINGS)] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, float] | None = None
    user: Text | None = None
    ignore_eos: bool | None = Field(
        default=None, description="Extension (as in vLLM): keep generating past end-of-sequence."
    )
    return_token_ids: bool | None = Field(
        default=None, description="Extension (as in vLLM): each chunk carries `token_ids`, the "
        "ids of its tokens; the first also `prompt_token_ids`.")
    resume_token_ids: Annotated[list[TokenId], Field(max_length=MAX_RESUME_TOKENS)] | None = (
        Field(default=None, description="Extension (prfaas): the output token ids a cut stream "
              "already delivered; the reply continues the same generation after them (send the "
              "original request unchanged otherwise; max_tokens counts these tokens)."))


class CompletionBody(_Sampling):
    """POST /v1/completions."""

    prompt: Text | Annotated[list[Text], Field(min_length=1, max_length=1)]
    logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    echo: bool | None = None
    best_of: Annotated[int, Field(ge=1, le=20)] | None = None
    suffix: Text | None = None


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["text"]
    text: Text


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["system", "developer", "user", "assistant"]
    content: Text | list[TextPart] | None = None
    name: Text | None = None
    # present (as null) when a client echoes an earlier assistant message back; non-null -> 400
    refusal: str | None = None
    tool_calls: list[Any] | None = None
    function_call: Any | None = None
    audio: Any | None = None
    annotations: list[Any] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatBody(_Sampling):
    """POST /v1/chat/completions."""

    messages: Annotated[list[Message], Field(min_length=1)]
    max_completion_tokens: MaxTokens | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    tools: list[Any] | None = None
    tool_choice: Any | None = None
    functions: list[Any] | None = None
    function_call: Any | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    modalities: list[str] | None = None
    audio: Any | None = None
    prediction: Any | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
