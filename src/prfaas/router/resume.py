"""Resuming a stream after tokens already delivered: a lost decode node's, or a client's."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import msgspec

from prfaas.cache.hashing import token_block_hashes
from prfaas.router.dispatch import DecodeLost, WorkerLost
from prfaas.router.held import HeldMissing
from prfaas.server.backend import BackendError, BackendUnavailable, CompletionRequest, TokenChunk
from prfaas.worker.messages import Sampling

if TYPE_CHECKING:
    from prfaas.router.backend import RouterBackend

log = logging.getLogger(__name__)
MAX_DECODE_RECOVERIES = 4  # a stream moves at most this often (each move needs a live node)


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


async def recovering(
    b: RouterBackend, req: CompletionRequest, tokens: tuple[int, ...], sampling: Sampling,
    t0: tuple[float, float],
) -> AsyncIterator[TokenChunk]:
    """Serve the request; when its decode node is lost, re-prefill prompt + the tokens
    streamed so far on another one and go on (vLLM's recompute recovery), until no decode
    node is left. Errors name no node or address: the log has the detail."""
    done = delivered(req)  # output token ids the client already has
    if done:
        b.count("resumed")
    full_kv = False  # set once a held prefix went missing: the retry ships the whole KV
    for attempt in range(MAX_DECODE_RECOVERIES + 2):
        if attempt:  # a re-placement's routing time starts here, not at the request's arrival
            t0 = (time.perf_counter(), time.thread_time())
        ids = tokens + tuple(done)
        resumed = replace_sampling(sampling, len(done))
        hashes = tuple(token_block_hashes(ids, b.block_tokens))
        try:
            attempts = b.serve_attempt(req, ids, hashes, resumed, t0, attempt > 0, full_kv)
            async for chunk in attempts:
                done.append(chunk.token_id or 0)
                yield chunk
            return
        except HeldMissing as exc:  # before its first token: nothing to resume, nothing lost
            log.warning("held prefix of %s missing (%s): whole KV next", req.request_id, exc)
            if full_kv:
                raise BackendError("the decode node asked for a prefix it was not sent") from None
            full_kv = True
            b.count("retry", "held")
        except DecodeLost as exc:
            log.warning("decode of %s lost after %d tokens: %s", req.request_id, len(done), exc)
            if attempt >= MAX_DECODE_RECOVERIES + full_kv or not b.members.alive("decode"):
                raise BackendUnavailable(
                    f"decode failed after {len(done)} tokens and no decode node is left "
                    "to resume it"
                ) from None
            b.count("recovery")
        except WorkerLost as exc:
            log.warning("prefill of %s failed everywhere: %s", req.request_id, exc)
            raise BackendError("prefill failed on every node tried") from None
