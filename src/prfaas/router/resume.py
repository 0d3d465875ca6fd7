"""Resuming a stream after tokens already delivered: a lost decode node's, or a client's."""

from __future__ import annotations

import msgspec

from prfaas.server.backend import CompletionRequest
from prfaas.worker.messages import Sampling


def replace_sampling(sampling: Sampling, resumed: int) -> Sampling:
    """The sampling of a request resumed after `resumed` output tokens: only the rest to go."""
    if not resumed:
        return sampling
    return msgspec.structs.replace(
        sampling, max_tokens=sampling.max_tokens - resumed, resumed=resumed
    )


def delivered(req: CompletionRequest) -> list[int]:
    """The output tokens the client already has: those it sent back with `resume_token_ids`
    (a stream cut with its router replica). The edge checked them against the vocabulary and
    max_tokens; the request goes on exactly as the router's own recovery of a lost decode node:
    prompt + these tokens re-prefilled, the continuation from output token len(them) on."""
    return list(req.resume_token_ids)
