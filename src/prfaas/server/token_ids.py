"""The token-id extension's request fields: `return_token_ids` (vLLM's) and `resume_token_ids`."""

from __future__ import annotations

from typing import Any

from prfaas.server.backend import Backend
from prfaas.server.errors import ApiError, unsupported
from prfaas.server.schemas import _Sampling


def token_id_fields(body: _Sampling, backend: Backend, prompt_text: str,
                    max_tokens: int) -> dict[str, Any]:
    """The CompletionRequest fields of the extension, validated against what the backend can do
    (400 when it cannot, or when the ids are out of its vocabulary or leave nothing to do)."""
    want_ids, resume = bool(body.return_token_ids), tuple(body.resume_token_ids or ())
    if not want_ids and not resume:
        return {}
    vocab = int(getattr(backend, "token_vocab_size", 0) or 0)
    if not vocab:
        param = "return_token_ids" if want_ids else "resume_token_ids"
        raise unsupported(param, "this deployment's backend does not report token ids")
    if resume and not getattr(backend, "resumes", False):
        raise unsupported("resume_token_ids", "this deployment's backend cannot resume a "
                          "generation from its token ids")
    bad = next((i for i, t in enumerate(resume) if t >= vocab), None)
    if bad is not None:
        raise ApiError(400, f"resume_token_ids[{bad}] = {resume[bad]} is not a token of this "
                       f"model (vocabulary of {vocab})", param="resume_token_ids",
                       code="invalid_value")
    if len(resume) >= max_tokens:
        raise ApiError(400, f"resume_token_ids holds {len(resume)} tokens and max_tokens is "
                       f"{max_tokens}: nothing is left to generate (max_tokens counts the "
                       "resumed tokens; send the original request's max_tokens)",
                       param="resume_token_ids", code="invalid_value")
    prompt_ids = tuple(backend.tokenize(prompt_text)) if want_ids else ()  # type: ignore[attr-defined]
    return {"return_token_ids": want_ids, "prompt_token_ids": prompt_ids,
            "resume_token_ids": resume}
