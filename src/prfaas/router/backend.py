"""The router's Backend: tokenize, match prefixes, ask the policy, dispatch, stream the tokens."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from prfaas.core.request import RequestSpec
from prfaas.deploy.config import DeploymentConfig, PolicyConfig
from prfaas.deploy.planning import StartupPlan, startup_plan, warmup_wanted
from prfaas.errors import UsageError
from prfaas.policy.params import PolicyParams
from prfaas.policy.placement import Placement
from prfaas.policy.registry import get_policy
from prfaas.router.admission import Admitter
from prfaas.router.bandwidth import BandwidthMonitor
from prfaas.router.decision_log import DecisionLog
from prfaas.router.dispatch import DecodeLost, Dispatcher, WorkerLost
from prfaas.router.encoding import OnceEncoder
from prfaas.router.fleet_view import LiveFleet
from prfaas.router.held import Held, held_prefix
from prfaas.router.live_view import index_match, telemetry
from prfaas.router.membership import Membership, NodeRecord
from prfaas.router.rebalancer import Observations
from prfaas.router.records import Decision, decode_chunks, record_prefill
from prfaas.router.resume import recovering
from prfaas.router.transfer_setup import pull_spec
from prfaas.server.backend import (
    BackendUnavailable,
    CompletionRequest,
    ContextLengthExceeded,
    TokenChunk,
    Usage,
)
from prfaas.worker.bytetok import router_tokenizer
from prfaas.worker.messages import DecodeJob, PullSpec, Sampling

log = logging.getLogger(__name__)
SEED_MOD = 2**63
EMULATED_CONTEXT_TOKENS = 1 << 20
TRANSFORMERS_CONTEXT_TOKENS = 8192


def _failed(task: asyncio.Task[Any]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is not None


def default_context_tokens(cfg: DeploymentConfig) -> int:
    """The configured limit, else the engine's (the tiny presets' 8192 positions); workers report
    their real limit in heartbeats and requests are checked against the smallest."""
    if cfg.engine.max_context_tokens:
        return cfg.engine.max_context_tokens
    return EMULATED_CONTEXT_TOKENS if cfg.engine.kind == "emulated" else TRANSFORMERS_CONTEXT_TOKENS


class RouterBackend:
    resumes = True  # the token-id extension: a client's resume_token_ids continue its stream

    def __init__(
        self, cfg: DeploymentConfig, metrics: Any = None, wan_url: str = "", tls: Any = None
    ) -> None:
        self.cfg = cfg
        self.wan_url = wan_url
        self.members = Membership(cfg)
        self.bandwidth = BandwidthMonitor(cfg)
        # tls: the router's client ssl.SSLContext (None in insecure mode)
        self.dispatch = Dispatcher(self.members, cfg.router.request_timeout_s, tls)
        self.dispatch.on_retry = lambda stage: self.count("retry", stage)
        base = router_tokenizer(cfg.engine.model_path)
        self.tokenizer = OnceEncoder(base)
        # return_token_ids' prompt ids: the plain encoder, so the edge's count leaves its one
        # reuse to generate()
        self.tokenize, self.token_vocab_size = base.encode, int(base.vocab_size)
        self.policy_name = cfg.policy.name
        get_policy(cfg.policy.name)  # validates the name
        self.fleet = LiveFleet(self.members, cfg.block_tokens, cfg.router.dead_after_s)
        plan = startup_plan(cfg)
        self.params: PolicyParams = plan.params
        self.plan_line = plan.line
        # A real engine is planned after its warm-up pass (router/warmup.py): pending, running,
        # done, failed (file/default values kept), followed (another replica's plan), off.
        self.warmup = "pending" if warmup_wanted(cfg) else "off"
        self.warmup_samples: Any = None  # what it measured: set_policy re-plans on it
        self.warmup_fit: dict[str, Any] = {}  # ... and fitted (/internal/state)
        self.scenario = plan.scenario  # what the plan rests on (the rebalancer starts from it)
        self.block_tokens = cfg.block_tokens
        self.max_context_tokens = default_context_tokens(cfg)
        self.metrics = metrics
        self.decisions: deque[Decision] = deque(maxlen=50)
        self.decision_log = DecisionLog()  # every decision, for GET /internal/decisions
        self.recent_offload: deque[bool] = deque(maxlen=200)
        self.threshold_tokens = self.params.threshold_tokens
        self.observed = Observations()  # what the control loop's current period saw
        self.rebalancer: Any = None
        self.cluster: Any = None  # router/cluster_members.py: etcd, event streams, leadership
        self.route_s: deque[float] = deque(maxlen=100_000)  # per-request routing time
        # ... and its CPU time: on an oversubscribed machine the wall time also counts the
        # moments the OS ran other processes in the middle of a decision.
        self.route_cpu_s: deque[float] = deque(maxlen=100_000)
        self.first_request_s: float | None = None  # monotonic; the bandwidth schedule's origin
        self.admission = Admitter(cfg, self.time_scale, self.count)

    def set_policy(self, name: str, params: dict[str, Any] | None = None) -> None:
        """Switch the routing policy at run time (tests, experiments); `params` written here win
        over the planner's, like [policy.params] in the file."""
        get_policy(name)
        explicit = params if params is not None else self.cfg.policy.params
        self.cfg = replace(self.cfg, policy=PolicyConfig(name, explicit))
        self.policy_name = name
        self.apply_startup(startup_plan(self.cfg, self.warmup_samples), self.warmup_samples)

    def apply_startup(self, plan: StartupPlan, warmup: Any = None) -> None:
        """A startup plan (the file's, or the warm-up pass's) and the line that explains it."""
        self.warmup_samples = warmup
        self.plan_line = plan.line
        self.scenario = plan.scenario or self.scenario
        self.apply_params(plan.params)

    def apply_params(self, params: PolicyParams) -> None:
        """New policy parameters (the control loop's re-plan)."""
        self.params = params
        self.threshold_tokens = params.threshold_tokens

    @property
    def time_scale(self) -> float:
        """Modelled seconds per wall-clock second (the emulated engine runs time_scale x faster)."""
        return self.cfg.engine.time_scale if self.cfg.engine.kind == "emulated" else 1.0

    # -- Backend protocol ------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    async def health(self) -> dict[str, Any]:
        """What the public /health says (router/health.py): counts per cluster, no node names."""
        from prfaas.router.health import health_status

        return health_status(self.members.nodes.values())

    async def health_detail(self) -> dict[str, Any]:
        nodes = {
            r.name: {"alive": r.alive, "role": r.role, "draining": r.draining}
            for r in self.members.nodes.values()
        }
        return {**await self.health(), "policy": self.policy_name, "nodes": nodes}

    async def generate(self, req: CompletionRequest) -> AsyncIterator[TokenChunk]:
        t0 = (time.perf_counter(), time.thread_time())
        if self.first_request_s is None:
            self.first_request_s = time.monotonic()
        tokens = self.tokenizer.encode(req.prompt_text)
        if not tokens:
            raise UsageError("the prompt is empty: give at least one token")
        limit = self.context_limit()
        if len(tokens) + req.max_tokens > limit:
            raise ContextLengthExceeded(
                f"prompt of {len(tokens)} tokens + max_tokens {req.max_tokens} exceeds the "
                f"context limit of {limit} tokens"
            )
        sampling = Sampling(
            max_tokens=req.max_tokens,
            temperature=req.temperature,
            top_p=req.top_p,
            seed=(req.seed or 0) % SEED_MOD,
            stop=tuple(req.stop),
            ignore_eos=req.ignore_eos,
        )
        async for chunk in recovering(self, req, tokens, sampling, t0):
            yield chunk

    def count(self, what: str, label: str = "") -> None:
        """Reliability counters (recovery, retry, shed, cancelled) when metrics are on."""
        if self.metrics is not None:
            self.metrics.count_reliability(what, label)

    async def change_role(self, node: str, role: str) -> None:
        from prfaas.router.rebalancer import change_role

        await change_role(self, node, role)

    def context_limit(self) -> int:
        return self.members.context_limit(self.max_context_tokens)

    # -- one attempt -----------------------------------------------------------------------
    def _place(
        self,
        req: CompletionRequest,
        tokens: tuple[int, ...],
        hashes: tuple[int, ...],
        shed: bool,
        full_kv: bool = False,
    ) -> tuple[Placement, PullSpec | None, dict[str, Any], Held]:
        per_node = self.members.index.match(hashes) if hashes else {}
        now = time.monotonic()
        spec = RequestSpec(req.request_id, now, len(tokens), req.max_tokens, hashes)
        # Over per-cluster indexes (O(log n) per decision); RouterAdapter builds the same view
        # from scratch (tests/test_router_fleet_view.py). `shed`: the request's first placement.
        matched = index_match(self.members, per_node)
        view = self.fleet.view(now, telemetry(self.bandwidth), matched, arrival=shed)
        placement = get_policy(self.policy_name)(view, spec, self.params)
        if not placement.rejected and shed:
            self.admission.check(view, spec, placement, self.params)
        entry = self.decision_log.add(
            req.request_id, req.seed, req.arrival_s, now, len(tokens), placement, view
        )
        if placement.rejected:
            raise BackendUnavailable(f"no capacity: {placement.reason}")
        held = held_prefix(self, placement, per_node, hashes, len(tokens), full_kv)
        return placement, pull_spec(self, placement, per_node), entry, held

    async def serve_attempt(
        self,
        req: CompletionRequest,
        tokens: tuple[int, ...],
        hashes: tuple[int, ...],
        sampling: Sampling,
        t0: tuple[float, float],  # (wall, thread CPU) clocks when routing began
        recovering: bool = False,  # our own recovery is never shed (a client's resume may be)
        full_kv: bool = False,  # ship the whole KV (a held prefix went missing: router/held.py)
    ) -> AsyncIterator[TokenChunk]:
        """One placement and its run: prefill, KV to the decode node, the tokens as they come."""
        rid = req.request_id
        resumed = sampling.resumed  # tokens of `tokens` that are output already streamed
        placement, pull, logged, held = self._place(req, tokens, hashes, not recovering, full_kv)
        self.route_s.append(time.perf_counter() - t0[0])  # tokenize, hash, match, view, policy
        self.route_cpu_s.append(time.thread_time() - t0[1])
        decode = self.members.nodes[placement.decode_node]
        decode.decode_active += 1
        decode.decode_pending += 1
        self.admission.waiting += 1
        stage = "prefill"  # queued or running on the prefill node, KV on its way; then decode
        wait_s = self.cfg.router.request_timeout_s
        job = DecodeJob(rid, len(tokens), sampling, wait_s, held.spec)
        opening = asyncio.create_task(
            self.dispatch.watch(self.dispatch.open_decode(decode, job), decode.name)
        )
        try:
            try:
                reply, pnode = await self.dispatch.prefill_with_retry(
                    rid,
                    tokens,
                    sampling,
                    placement.prefill_node,
                    decode,
                    pull,
                    placement.prefix_tokens,
                    held.tokens,
                )
            except WorkerLost as exc:
                if not decode.alive or _failed(opening):
                    raise DecodeLost(decode.name, f"lost during prefill ({exc})") from None
                raise
            finally:
                decode.decode_pending -= 1  # the reply comes once the KV reached the decode node
            record_prefill(self, rid, tokens, placement, pull, reply, pnode)
            if held.tokens and self.metrics is not None and pnode == placement.prefill_node:
                self.metrics.count_held(placement.prefill_cluster, held.tokens)
            self.decision_log.complete(logged, pnode, reply)
            try:
                resp = await opening
            except WorkerLost as exc:
                raise DecodeLost(exc.node, str(exc)) from None
            usage = Usage(len(tokens) - resumed, resumed, reply.reused_tokens)
            async for chunk in decode_chunks(self, decode, resp, usage):
                if stage == "prefill":
                    stage = "decode"
                    self.admission.waiting -= 1
                    logged["first_token_s"] = time.monotonic()
                if chunk.finish_reason is not None:
                    # The node freed the slot with its last token (as the simulator counts it),
                    # not when the edge is done writing; the close that follows is no cancel.
                    stage = "done"
                    decode.decode_active -= 1
                yield chunk
        except (asyncio.CancelledError, GeneratorExit):
            if stage != "done":
                self.count("cancelled", stage)  # the client left or timed out: nothing runs on
            raise
        finally:
            if stage == "prefill":
                self.admission.waiting -= 1
            if stage != "done":
                decode.decode_active -= 1
            if not opening.done():
                opening.cancel()
            elif not opening.cancelled() and opening.exception() is None:
                opening.result().close()  # never read (an error came first): drop the connection

    # -- bookkeeping -----------------------------------------------------------------------
    def offload_fraction(self) -> float:
        return sum(self.recent_offload) / len(self.recent_offload) if self.recent_offload else 0.0

    def node_records(self) -> list[NodeRecord]:
        return sorted(self.members.nodes.values(), key=lambda r: (r.cluster, r.name))

    async def close(self) -> None:
        await self.dispatch.close()
