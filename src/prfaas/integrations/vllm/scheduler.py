"""Scheduler half of the connector: which requests send or receive, with which blocks."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from vllm.distributed.kv_transfer.kv_connector.v1.base import KVConnectorMetadata
from vllm.v1.request import RequestStatus

from prfaas.integrations.vllm.params import (
    ConnectorConfig,
    live_blocks,
    remote_token_count,
    wants_layerwise,
    wants_remote_decode,
    wants_remote_prefill,
)

log = logging.getLogger(__name__)

# A prefill that ran to its one token (or stopped on EOS there) has KV to send; aborts do not.
_SENDABLE = (RequestStatus.FINISHED_LENGTH_CAPPED, RequestStatus.FINISHED_STOPPED)


@dataclass(frozen=True, slots=True)
class SendSpec:
    transfer_id: str
    engine: str  # the decode engine id; its address comes from this connector's peers
    block_ids: tuple[tuple[int, ...], ...]  # per KV cache group
    num_tokens: int  # tokens whose KV/state the blocks hold


@dataclass(frozen=True, slots=True)
class RecvSpec:
    transfer_id: str
    block_ids: tuple[tuple[int, ...], ...]  # per KV cache group; empty: nothing to land
    deadline: float  # time.time() after which the load fails (vLLM then recomputes)
    cancel: bool = False  # the request ended before loading: drop what arrives


@dataclass
class PrfaasMeta(KVConnectorMetadata):  # type: ignore[misc]  # vLLM is untyped here
    send: dict[str, SendSpec] = field(default_factory=dict)
    recv: dict[str, RecvSpec] = field(default_factory=dict)
    # Prefills that finish in this step: their layers are pushed during the forward.
    early: dict[str, SendSpec] = field(default_factory=dict)


def same_blocks(pushed: Any, final: Any, state_groups: frozenset[int]) -> bool:
    """Whether a layer-wise push carried the finished request's blocks. In align mode a state
    group's block table loses the block-boundary checkpoint once the step is done (it stays in
    the prefix cache, the request's entry becomes the null block), so there the push may hold
    earlier states too: the receiver lands the tail, so the final ones must end the push."""
    for g, (have, want) in enumerate(zip(pushed, final, strict=True)):
        have_l, want_l = live_blocks(have, g in state_groups), live_blocks(want, g in state_groups)
        ok = have_l[len(have_l) - len(want_l):] == want_l if g in state_groups else have_l == want_l
        if not ok:
            return False
    return True


class SchedulerSide:
    def __init__(self, cfg: ConnectorConfig, state_groups: frozenset[int] = frozenset()) -> None:
        self.cfg = cfg
        self.state_groups = state_groups  # GDN/Mamba groups (one state per block, nulls skipped)
        self._send: dict[str, SendSpec] = {}
        self._recv: dict[str, RecvSpec] = {}
        self._sending: set[str] = set()  # handed to the worker, blocks held until it copied them
        self._loading: dict[str, str] = {}  # request id -> transfer id, until the worker landed it
        self._remote: dict[str, Any] = {}  # prefill requests whose KV goes to a decode instance
        self._early: dict[str, SendSpec] = {}  # pushed layer-wise: blocks free when they finish
        self._blocks: dict[str, list[list[int]]] = {}  # tracked prefills' block tables
        self.early_mismatches = 0  # blocks at finish differed from the step's (never seen)

    def on_new_request(self, request: Any) -> None:
        """Prefill side: compute h(N-1) only, so the decode side's recompute of the last token
        continues recurrent state correctly (vLLM's MooncakeConnector does the same)."""
        params = request.kv_transfer_params
        if not wants_remote_decode(params) or params.get("_prfaas_truncated"):
            return
        if wants_layerwise(params, self.cfg.layerwise):
            self._remote[request.request_id] = request
        if request.num_prompt_tokens <= 1 or request.prompt_token_ids is None:
            return
        request.prompt_token_ids.pop()
        request._all_token_ids.pop()
        request.num_prompt_tokens -= 1
        request.max_tokens = 1
        params["_prfaas_truncated"] = True

    def get_num_new_matched_tokens(self, request: Any, num_computed: int) -> tuple[int, bool]:
        if not wants_remote_prefill(request.kv_transfer_params):
            return 0, False
        count = remote_token_count(len(request.prompt_token_ids or ())) - num_computed
        return (count, True) if count > 0 else (0, False)

    def update_state_after_alloc(self, request: Any, blocks: Any, num_external: int) -> None:
        params = request.kv_transfer_params
        if not wants_remote_prefill(params):
            return
        ids = blocks.get_unhashed_block_ids_all_groups() if num_external > 0 else []
        self._loading[request.request_id] = params["transfer_id"]
        self._recv[request.request_id] = RecvSpec(
            params["transfer_id"],
            tuple(tuple(g) for g in ids),
            time.time() + self.cfg.load_timeout_s,
        )
        params["do_remote_prefill"] = False  # one transfer per request

    def _steps(self, out: Any) -> list[tuple[str, int]]:
        """(request, tokens computed before this step) for tracked prefills scheduled in this
        step; keeps each one's block table as the worker sees it (new blocks are appended)."""
        seen = []
        for new in getattr(out, "scheduled_new_reqs", ()):
            if new.req_id in self._remote:
                self._blocks[new.req_id] = [list(g) for g in new.block_ids]
                seen.append((new.req_id, new.num_computed_tokens))
        cached: Any = getattr(out, "scheduled_cached_reqs", None)
        for i, rid in enumerate(getattr(cached, "req_ids", ())):
            if rid not in self._remote:
                continue
            added = cached.new_block_ids[i]
            if rid in cached.resumed_req_ids or rid not in self._blocks:
                self._blocks[rid] = [list(g) for g in added or ()]
            elif added is not None:
                for have, more in zip(self._blocks[rid], added, strict=True):
                    have.extend(more)
            seen.append((rid, cached.num_computed_tokens[i]))
        return seen

    def _finishing(self, out: Any) -> dict[str, SendSpec]:
        """Layer-wise prefills whose prompt ends in this step: the worker pushes each of their
        layers as the forward finishes it. (Hybrid models in vLLM's align mode split a prefill
        at the last block boundary, so this is often the second step of a prompt.)"""
        early = {}
        for rid, computed in self._steps(out):
            req = self._remote[rid]
            if computed + out.num_scheduled_tokens.get(rid, 0) < req.num_prompt_tokens:
                continue
            params = req.kv_transfer_params
            early[rid] = SendSpec(params["transfer_id"], str(params.get("remote_engine_id", "")),
                                  tuple(tuple(g) for g in self._blocks.pop(rid)),
                                  req.num_prompt_tokens)
            del self._remote[rid]  # one push per request
        self._early.update(early)
        return early

    def build_meta(self, scheduler_output: Any = None) -> PrfaasMeta:
        early = self._finishing(scheduler_output) if self._remote else {}
        meta = PrfaasMeta(send=self._send, recv=self._recv, early=early)
        self._sending.update(self._send)
        self._send, self._recv = {}, {}
        return meta

    def finished(self, request: Any, block_ids: tuple[list[int], ...]) -> tuple[bool, None]:
        """Hold the prefill's blocks until the worker copied them out; aborted requests free now."""
        params = request.kv_transfer_params
        rid = request.request_id
        tid = self._loading.pop(rid, None)
        if tid is not None:
            # Ended (aborted) while its KV was still on the way: its blocks are freed now, so the
            # worker must not land anything in them later.
            self._recv[rid] = RecvSpec(tid, (), 0.0, cancel=True)
            return False, None
        if params and params.get("do_remote_prefill") and params.get("transfer_id"):
            # Ended before it was scheduled: tell the worker to drop the pushed KV.
            self._recv[rid] = RecvSpec(params["transfer_id"], (), 0.0, cancel=True)
            params["do_remote_prefill"] = False
            return False, None
        self._remote.pop(rid, None)
        self._blocks.pop(rid, None)
        early = self._early.pop(rid, None)
        if early is not None:
            # Its layers were copied out during the forward: the blocks can go now.
            if not same_blocks(early.block_ids, block_ids, self.state_groups):
                self.early_mismatches += 1
                log.warning("prfaas: %s finished with blocks %s, its last step had %s", rid,
                            block_ids, early.block_ids)
            return False, None
        if not wants_remote_decode(params) or request.status not in _SENDABLE:
            return False, None
        if not any(block_ids):
            return False, None
        self._send[rid] = SendSpec(
            params["transfer_id"],
            str(params.get("remote_engine_id", "")),
            tuple(tuple(g) for g in block_ids),
            request.num_computed_tokens,
        )
        return True, None

    def transfers_done(self, sending: set[str] | None, recving: set[str] | None) -> None:
        self._sending.difference_update(sending or ())
        for rid in recving or ():
            self._loading.pop(rid, None)

    def pending_push(self) -> bool:
        return bool(self._send or self._sending)
