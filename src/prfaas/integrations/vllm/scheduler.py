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


class SchedulerSide:
    def __init__(self, cfg: ConnectorConfig) -> None:
        self.cfg = cfg
        self._send: dict[str, SendSpec] = {}
        self._recv: dict[str, RecvSpec] = {}
        self._sending: set[str] = set()  # handed to the worker, blocks held until it copied them
        self._loading: dict[str, str] = {}  # request id -> transfer id, until the worker landed it
        self._remote: dict[str, Any] = {}  # prefill requests whose KV goes to a decode instance
        self._early: dict[str, SendSpec] = {}  # pushed layer-wise: blocks free when they finish
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

    def _finishing(self, scheduler_output: Any) -> dict[str, SendSpec]:
        """Layer-wise prefills whose whole prompt runs in this step (new, not chunked): the
        step's block ids are all of theirs, so the worker can push each layer as it is done.
        A chunked prefill is pushed whole when it finishes instead."""
        early = {}
        for new in getattr(scheduler_output, "scheduled_new_reqs", ()):
            req = self._remote.get(new.req_id)
            n = scheduler_output.num_scheduled_tokens.get(new.req_id, 0)
            if req is None or new.num_computed_tokens + n < req.num_prompt_tokens:
                continue
            params = req.kv_transfer_params
            early[new.req_id] = SendSpec(params["transfer_id"],
                                         str(params.get("remote_engine_id", "")),
                                         tuple(tuple(g) for g in new.block_ids),
                                         req.num_prompt_tokens)
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
        early = self._early.pop(rid, None)
        if early is not None:
            # Its layers were copied out during the forward: the blocks can go now.
            if tuple(tuple(g) for g in block_ids) != early.block_ids:
                self.early_mismatches += 1
                log.warning("prfaas: %s finished with other blocks than its last step's", rid)
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
