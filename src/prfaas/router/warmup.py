"""The router's warm-up pass over a real engine: time a few prompt lengths on every prefill node
and a few decode steps, over the workers' authenticated internal RPC, then plan on what it
measured (deploy/planning.py: the same planner path as the emulated engine's profiles)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from typing import TYPE_CHECKING, Any

from prfaas.control.warmup import WarmupSamples, warmup_lengths
from prfaas.control.window import PrefillSample
from prfaas.deploy.planning import StartupPlan, startup_plan, unplanned
from prfaas.router.dispatch import WorkerLost
from prfaas.router.membership import NodeRecord
from prfaas.worker.messages import DecodeJob, PrefillJob, PrefillReply, Sampling

if TYPE_CHECKING:
    from prfaas.router.backend import RouterBackend

log = logging.getLogger(__name__)
# The tiny CPU models prefill ~0.1 ms/token: these cost ~0.4 s per node and repeat; past 2K the
# attention term starts to show, which the FLOP-shaped prior then carries to the context's end.
LENGTHS = (64, 256, 1024, 2048)
REPEATS = 2  # after one unmeasured first call per node (allocator, caches, connections)
DECODE_TOKENS = 24  # one stream: 23 step intervals
NODES_WAIT_S = 600.0  # workers load their models first; `prfaas up` has its own deadline
POLL_S = 0.1
MAX_NODES_PER_ROLE = 2  # a cluster role's nodes run one engine: a big deployment's pass stays short


async def one_request(
    b: RouterBackend,
    rec: NodeRecord,
    decode: NodeRecord,
    tokens: tuple[int, ...],
    max_tokens: int,
) -> tuple[PrefillReply, list[tuple[float, int]]]:
    """Prefill on `rec`, decode on `decode` (the path of a routed request, no placement):
    the prefill reply and (arrival time, tokens) of every decode line."""
    rid = f"warmup-{rec.name}-{time.monotonic_ns()}"
    sampling = Sampling(max_tokens=max_tokens, ignore_eos=True)
    job = DecodeJob(rid, len(tokens), sampling, wait_s=b.cfg.router.request_timeout_s)
    opening = asyncio.create_task(
        b.dispatch.watch(b.dispatch.open_decode(decode, job), decode.name)
    )
    try:
        target = b.dispatch.target(rec.cluster, decode)
        prefill = PrefillJob(rid, 0, tokens, sampling, target)
        reply = await b.dispatch.prefill(rec, prefill, len(tokens))
        stream = await opening
    finally:
        if not opening.done():
            opening.cancel()
    lines = [(time.perf_counter(), len(line.t)) async for line in b.dispatch.lines(decode, stream)]
    return reply, lines


def step_times(lines: list[tuple[float, int]]) -> list[float]:
    """Seconds per decode step from consecutive lines (the first follows the prefill)."""
    return [(t1 - t0) / n for (t0, _), (t1, n) in itertools.pairwise(lines) if n > 0]


async def measure(b: RouterBackend) -> WarmupSamples:
    t_start = time.perf_counter()
    role = {c.name: c.role for c in b.cfg.clusters}
    by_role: dict[str, list[NodeRecord]] = {}
    for r in sorted(b.members.alive("prefill"), key=lambda r: (r.cluster, r.name)):
        by_role.setdefault(role[r.cluster], []).append(r)
    prefill_nodes = [r for nodes in by_role.values() for r in nodes[:MAX_NODES_PER_ROLE]]
    decoders = [r for r in b.members.alive("decode") if role[r.cluster] == "pd"]
    if not prefill_nodes or not decoders:
        raise WorkerLost("warm-up", "no live prefill and decode node to measure")
    decode = min(decoders, key=lambda r: r.name)
    context = b.context_limit()
    rng = random.Random(0)  # fresh random prompts: no prefix hits, nothing like a user's prompt

    def prompt(n: int) -> tuple[int, ...]:
        return tuple(rng.randrange(b.token_vocab_size) for _ in range(n))

    samples: list[PrefillSample] = []
    for rec in prefill_nodes:
        await one_request(b, rec, decode, prompt(32), 1)  # the first call: not measured
    # Nodes interleaved at each length: a burst of load from elsewhere on the machine slows
    # both roles alike instead of one role's whole curve (the planner weighs them against
    # each other).
    for _ in range(REPEATS):
        for n in warmup_lengths(context, LENGTHS):
            for rec in prefill_nodes:
                reply, _ = await one_request(b, rec, decode, prompt(n), 1)
                samples.append(
                    PrefillSample(role[rec.cluster], n - reply.reused_tokens, reply.compute_s)
                )
    local = [r for r in prefill_nodes if r.cluster == decode.cluster] or prefill_nodes
    _, lines = await one_request(b, local[0], decode, prompt(64), DECODE_TOKENS)
    elapsed = time.perf_counter() - t_start
    return WarmupSamples(tuple(samples), tuple(step_times(lines)), elapsed, context)


def fit_summary(samples: WarmupSamples, plan: StartupPlan) -> dict[str, Any]:
    """What the pass measured and fitted, for /internal/state: T(l) in ms per role at the
    measured lengths, the decode step, the sample counts and the pass's duration."""
    out: dict[str, Any] = {"samples": samples.count, "elapsed_s": round(samples.elapsed_s, 3)}
    for role in ("prfaas", "pd"):
        out[f"{role}_prefill_samples"] = sum(s.cluster_role == role for s in samples.prefill)
    if plan.decision is None:
        return out
    p = plan.decision.profiles
    for role, fit in (("prfaas", p.prfaas), ("pd", p.pd)):
        out[f"{role}_prefill_ms"] = {
            n: round(1e3 * float(fit.profile.time_s(n)), 2) for n in LENGTHS
        }  # fmt: skip
    out["decode_step_ms"] = round(1e3 * p.decode.t_decode_s, 3)
    return out


async def wait_for_nodes(b: RouterBackend) -> bool:
    deadline = time.monotonic() + NODES_WAIT_S
    while time.monotonic() < deadline:
        if b.members.nodes and b.members.all_registered():
            return True
        await asyncio.sleep(POLL_S)
    return False


def follows_another(b: RouterBackend) -> bool:
    """A replica that joined a running deployment, or is not the leader of several, takes the
    plan from the shared policy record instead of measuring again under traffic."""
    cluster = b.cluster
    if cluster is None:
        return False
    if cluster.policy.joined:
        return True
    return b.cfg.router.replicas > 1 and not cluster.is_leader


async def run_warmup(b: RouterBackend) -> None:
    """Measure once every node is up, plan, apply; on a timeout or a failure keep the file's
    (or default) values and say so. `b.warmup` tells `prfaas up` when it is over."""
    cfg = b.cfg
    if not await wait_for_nodes(b):
        b.apply_startup(unplanned(cfg, "warm-up skipped: the nodes never all came up"), None)
        b.warmup = "failed"
        return
    if follows_another(b):
        b.plan_line = "control: following the policy record in etcd (a replica's warm-up plan)"
        b.warmup = "followed"
        return
    b.warmup = "running"
    plan: StartupPlan
    samples: WarmupSamples | None = None
    try:
        samples = await asyncio.wait_for(measure(b), cfg.control.warmup_s)
        plan = startup_plan(cfg, samples)
    except TimeoutError:
        plan = unplanned(cfg, f"warm-up timed out after {cfg.control.warmup_s:g} s")
    except Exception as exc:  # whatever went wrong, serve with the file's values
        log.warning("warm-up failed", exc_info=True)
        plan = unplanned(cfg, f"warm-up failed ({type(exc).__name__}: {exc})")
    (log.info if samples is not None else log.warning)("%s", plan.line)
    b.apply_startup(plan, samples)
    b.warmup_fit = fit_summary(samples, plan) if samples is not None else {}
    b.warmup = "done" if samples is not None else "failed"
