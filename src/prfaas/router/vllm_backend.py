"""Router backend over unmodified vLLM instances: PrfaaS policy, prefill hop, streamed decode."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
from tokenizers import Tokenizer

from prfaas.cache.hashing import token_block_hashes
from prfaas.cache.index import GlobalPrefixIndex
from prfaas.core.request import RequestSpec
from prfaas.errors import UsageError
from prfaas.policy.params import PolicyParams
from prfaas.policy.placement import Placement
from prfaas.policy.registry import get_policy
from prfaas.router.vllm_events import EventSubscriber
from prfaas.router.vllm_nodes import VllmFleet, VllmNode
from prfaas.router.vllm_pull import pull_prefix, pull_source
from prfaas.server.backend import (
    BackendError,
    BackendUnavailable,
    CompletionRequest,
    TokenChunk,
    Usage,
)

log = logging.getLogger(__name__)


class VllmBackend:
    """Implements the server's Backend protocol by driving vLLM prefill and decode instances."""

    # The token-id extension is not served here (the edge answers 400): the decode stream is
    # relayed as text, and vLLM cannot continue a seeded sample after given output tokens (a
    # new request restarts its generator), so a resume would not be the same generation.
    token_vocab_size = 0
    resumes = False

    def __init__(self, fleet: VllmFleet) -> None:
        self.fleet = fleet
        self.tokenizer = Tokenizer.from_file(fleet.tokenizer)
        get_policy(fleet.policy)  # validates the name
        self.params = PolicyParams(**fleet.params)
        self.index = GlobalPrefixIndex(needs_state=False)
        self.events = EventSubscriber(self.index)
        self.http = httpx.AsyncClient(timeout=fleet.request_timeout_s)
        self.log: list[dict[str, Any]] = []  # one entry per request: where it ran and why

    def start_events(self) -> None:
        # Only prefill instances' caches can serve a prefill: a decode instance also caches the
        # blocks it received, but vLLM never prefills there, so its hits would mislead the policy.
        if self.fleet.events_bind:
            prefill = {n.name: self.fleet.block_tokens for n in self.fleet.nodes.values()
                       if n.role == "prefill"}
            self.events.start(self.fleet.events_bind, prefill)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text).ids)

    async def health(self) -> dict[str, Any]:
        nodes = {n.name: {"alive": n.alive, "role": n.role} for n in self.fleet.nodes.values()}
        ok = any(n.alive and n.role == "decode" for n in self.fleet.nodes.values())
        return {"ok": ok, "backend": "vllm", "policy": self.fleet.policy, "nodes": nodes}

    def place(self, req_id: str, tokens: list[int], max_tokens: int,
              exclude: frozenset[str] = frozenset()) -> tuple[Placement, dict[str, int]]:
        hashes = tuple(token_block_hashes(tokens, self.fleet.block_tokens))
        matches = self.index.match(hashes) if hashes else {}
        view = self.fleet.view(matches, exclude)
        spec = RequestSpec(req_id, time.monotonic(), len(tokens), max(max_tokens, 1), hashes)
        placement = get_policy(self.fleet.policy)(view, spec, self.params)
        if placement.rejected:
            raise BackendUnavailable(f"no capacity: {placement.reason}")
        return placement, matches

    async def generate(self, req: CompletionRequest) -> AsyncIterator[TokenChunk]:
        tokens = self.tokenizer.encode(req.prompt_text).ids
        if not tokens:
            raise UsageError("the prompt is empty: give at least one token")
        tid = f"xfer-{uuid.uuid4().hex}"
        exclude: frozenset[str] = frozenset()
        entry: dict[str, Any] = {"request_id": req.request_id, "transfer_id": tid,
                                 "input_tokens": len(tokens), "attempts": []}
        for _ in range(len(self.fleet.nodes)):
            placement, matches = self.place(req.request_id, tokens, req.max_tokens, exclude)
            pnode = self.fleet.nodes[placement.prefill_node]
            dnode = self.fleet.nodes[placement.decode_node]
            entry["attempts"].append({"prefill": pnode.name, "decode": dnode.name,
                                      "reason": placement.reason,
                                      "predicted_prefix_tokens": placement.prefix_tokens,
                                      "matches": matches})
            try:
                await self._maybe_pull(placement, matches, tokens, pnode, entry)
                await self._prefill(pnode, dnode, tokens, req, tid)
                break
            except BackendError as exc:
                log.warning("prefill of %s on %s failed (%s); re-placing", req.request_id,
                            pnode.name, exc)
                pnode.failed()
                exclude = exclude | {pnode.name}
                tid = f"xfer-{uuid.uuid4().hex}"
                entry["transfer_id"] = tid
        else:
            raise BackendUnavailable("every prefill node failed")
        entry.update(prefill=pnode.name, decode=dnode.name, offloaded=placement.offloaded)
        self.log.append(entry)
        async for chunk in self._decode(pnode, dnode, tokens, req, tid, entry):
            yield chunk

    async def _maybe_pull(self, placement: Placement, matches: dict[str, int], tokens: list[int],
                          dst: VllmNode, entry: dict[str, Any]) -> None:
        """The policy chose a CachePull: bring the cached prefix (whole blocks) to the prefill
        node first, so its prefill reuses it (router/vllm_pull.py)."""
        found = (pull_source(self.fleet, placement.cache_pull, matches, dst)
                 if placement.cache_pull is not None else None)
        if found is None or placement.cache_pull is None:
            return
        src, blocks = found
        bt = self.fleet.block_tokens
        n = min(placement.cache_pull.tokens, blocks * bt, len(tokens) - 1) // bt * bt
        if n >= bt:
            entry["pull"] = await pull_prefix(self.http, self.fleet.model, src, dst,
                                              tokens[: n + 1])  # n <= len(tokens) - 1

    def _body(self, tokens: list[int], req: CompletionRequest, max_tokens: int) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.fleet.model, "prompt": tokens,
                                "max_tokens": max_tokens, "temperature": req.temperature,
                                "top_p": req.top_p, "ignore_eos": req.ignore_eos}
        if req.seed is not None:
            body["seed"] = req.seed
        if req.stop:
            body["stop"] = list(req.stop)
        return body

    async def _prefill(self, p: VllmNode, d: VllmNode, tokens: list[int],
                       req: CompletionRequest, tid: str) -> None:
        body = self._body(tokens, req, 1)
        body["kv_transfer_params"] = {"do_remote_decode": True, "do_remote_prefill": False,
                                      "transfer_id": tid, "remote_engine_id": d.engine_id}
        p.inflight += 1
        try:
            resp = await self.http.post(f"{p.url}/v1/completions", json=body,
                                        headers={"X-Request-Id": tid})
        except httpx.HTTPError as exc:
            raise BackendError(f"{p.name}: {type(exc).__name__}: {exc}") from None
        finally:
            p.inflight -= 1
        if resp.status_code != 200:
            raise BackendError(f"{p.name}: HTTP {resp.status_code}: {resp.text[:200]}")

    async def _decode(self, p: VllmNode, d: VllmNode, tokens: list[int],
                      req: CompletionRequest, tid: str,
                      entry: dict[str, Any]) -> AsyncIterator[TokenChunk]:
        body = self._body(tokens, req, req.max_tokens)
        body.update(stream=True, stream_options={"include_usage": True})
        body["kv_transfer_params"] = {"do_remote_decode": False, "do_remote_prefill": True,
                                      "transfer_id": tid, "remote_engine_id": p.engine_id}
        d.inflight += 1
        n, finish, held = 0, None, None
        try:
            async with self.http.stream("POST", f"{d.url}/v1/completions", json=body,
                                        headers={"X-Request-Id": tid}) as resp:
                if resp.status_code != 200:
                    text = (await resp.aread()).decode(errors="replace")[:200]
                    raise BackendError(f"{d.name}: HTTP {resp.status_code}: {text}")
                async for line in resp.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    msg = json.loads(line[6:])
                    for ch in msg.get("choices", []):
                        if held is not None:
                            yield TokenChunk(held)
                        n += 1
                        held = ch.get("text", "")
                        finish = ch.get("finish_reason") or finish
                    if msg.get("usage"):
                        entry["usage"] = msg["usage"]
        except httpx.HTTPError as exc:
            d.failed()
            raise BackendError(f"{d.name}: {type(exc).__name__}: {exc}") from None
        finally:
            d.inflight -= 1
        # vLLM may pack several tokens into one SSE chunk: its own usage counts them right.
        got = entry.get("usage") or {}
        details = got.get("prompt_tokens_details") or {}
        usage = Usage(len(tokens), int(got.get("completion_tokens") or n),
                      int(details.get("cached_tokens") or 0))
        yield TokenChunk(held or "", None, "length" if finish == "length" else "stop", usage)

    async def close(self) -> None:
        await self.events.close()
        await self.http.aclose()
