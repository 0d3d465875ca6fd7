"""The simulation: arrivals -> view -> policy -> prefill -> (pipelined) KV transfer -> decode."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

from prfaas.control.window import ObservationWindow, PrefillSample
from prfaas.core.arrivals import ArrivalGaps
from prfaas.core.lifecycle import Phase, RequestRecord
from prfaas.core.metrics import RunSeries
from prfaas.core.request import RequestSpec
from prfaas.core.view import ClusterView
from prfaas.policy.params import PolicyParams
from prfaas.policy.placement import Placement
from prfaas.policy.registry import get_policy
from prfaas.sim.adapter import SimAdapter
from prfaas.sim.admission import SimAdmission
from prfaas.sim.build import build_cluster, build_links
from prfaas.sim.decode_node import DecodeNode
from prfaas.sim.fastprofile import kv_bytes_fn, kv_split
from prfaas.sim.kernel import Kernel
from prfaas.sim.node_pools import counted_blocks, hold, node_pool
from prfaas.sim.nodes import Job, PrefillNode
from prfaas.sim.pulls import start_pull
from prfaas.sim.series import sample_series
from prfaas.sim.setup import ClusterSpec, SimSetup
from prfaas.sim.state import Node, SimCluster, SimResult

DecisionHook = Callable[[ClusterView, RequestSpec, Placement], None]


class Simulation:
    """One run of one policy on one deployment over a fixed list of requests."""

    def __init__(
        self,
        setup: SimSetup,
        requests: Sequence[RequestSpec],
        *,
        on_decision: DecisionHook | None = None,
        progress: Callable[[float], None] | None = None,
    ) -> None:
        self.setup = setup
        self.kernel = Kernel()
        self.requests = requests
        self.records: list[RequestRecord] = []
        self.route = get_policy(setup.policy)
        self.params: PolicyParams = setup.params
        self.on_decision = on_decision
        self.progress = progress
        self.kv_fn = kv_bytes_fn(setup.kv)
        self.state_bytes, self.kv_per_token = kv_split(setup.kv)
        self.rdma_bytes_per_s = setup.rdma_gbps * 1e9 / 8
        self.clusters = [build_cluster(self, spec) for spec in sorted(setup.clusters, key=_name)]
        self.by_name = {c.name: c for c in self.clusters}
        self.nodes: dict[str, Node] = {n.node_id: n for c in self.clusters for n in c.nodes}
        self.links = build_links(self)
        self.series = RunSeries(
            interval_s=setup.sample_s,
            egress_links=tuple(
                link.name for link in self.links.values() if self.by_name[link.src].role == "prfaas"
            ),
        )
        self.adapter = SimAdapter(self)
        self.arrival_gaps = ArrivalGaps()
        self.admission = SimAdmission(setup.admission) if setup.admission else None
        self.done = 0
        self.last_done_s = 0.0
        self.tails = 0  # prefill ended, KV still on the wire
        self.rebalances: list[dict[str, object]] = []
        self.window_inc: list[int] = []
        self.window_out: list[int] = []
        self.window_prefill: list[PrefillSample] = []
        self.window = ObservationWindow()
        self._alpha = 1.0 - math.exp(-setup.sample_s / setup.ewma_tau_s)

    # -- construction ---------------------------------------------------------------------
    def make_prefill_node(self, node_id: str, cluster: SimCluster) -> PrefillNode:
        node = PrefillNode(self, node_id, cluster.name, cluster.time_fn, self.setup.chunk_tokens)
        node.pool = node_pool(self, cluster)
        return node

    def make_decode_node(self, node_id: str, cluster: str) -> DecodeNode:
        s = self.setup
        d = s.decode
        return DecodeNode(
            self,
            node_id,
            cluster,
            d.bs_max,
            d.t_decode_s,
            s.decode_kv_bytes,
            chunk_steps=s.decode_chunk_steps,
            report_free=s.decode_free_in_view,
        )

    # -- running --------------------------------------------------------------------------
    def run(self) -> SimResult:
        start = time.perf_counter()
        k = self.kernel
        if self.requests:
            k.at(self.requests[0].arrival_s, self._arrive, 0)
        for t_s, factor in self.setup.bandwidth.change_points():
            k.at(t_s, self._set_factor, factor)
        k.at(0.0, self._sample, None)
        if self.setup.rebalance is not None:
            k.at(self.setup.rebalance.period_s, self._rebalance, None)
        k.run(progress=self.progress)
        return SimResult(
            setup=self.setup,
            records=self.records,
            series=self.series,
            events=k.events,
            wall_s=time.perf_counter() - start,
            sim_end_s=self.last_done_s,
            rebalances=self.rebalances,
            final_deployment=self.deployment_counts(),
        )

    def deployment_counts(self) -> dict[str, int]:
        """Instances per role now (draining nodes count in their old role), plus t."""
        counts = {"n_prfaas": 0, "n_p": 0, "n_d": 0}
        for c in self.clusters:
            for n in c.nodes:
                if c.role == "prfaas":
                    counts["n_prfaas"] += 1
                elif isinstance(n, PrefillNode):
                    counts["n_p"] += 1
                else:
                    counts["n_d"] += 1
        counts["threshold_tokens"] = self.params.threshold_tokens
        return counts

    def _more_work(self) -> bool:
        return self.done < len(self.requests)

    def _set_factor(self, factor: float) -> None:
        for link in self.links.values():
            link.set_factor(factor)

    def _sample(self, _: object) -> None:
        sample_series(self)
        # Keep sampling while requests remain and something else can still happen.
        if self._more_work() and self.kernel.pending > 0:
            self.kernel.at(self.kernel.now + self.series.interval_s, self._sample, None)

    # -- arrival and routing ----------------------------------------------------------------
    def _arrive(self, i: int) -> None:
        k = self.kernel
        spec = self.requests[i]
        if i + 1 < len(self.requests):
            k.at(self.requests[i + 1].arrival_s, self._arrive, i + 1)
        rec = RequestRecord(spec)
        self.records.append(rec)
        self.arrival_gaps.add(k.now)
        view = self.adapter.view(spec, keep=self.on_decision is not None)
        placement = self.route(view, spec, self.params)
        if self.on_decision is not None:
            self.on_decision(view, spec, placement)
        rec.reason = placement.reason
        if placement.rejected:
            self._reject(rec, placement.reason)
            return
        shed = self.admission.check(view, spec, placement, self.params) if self.admission else ""
        if shed:
            self._reject(rec, shed)
            return
        prefill = self.nodes[placement.prefill_node]
        decode = self.nodes[placement.decode_node]
        assert isinstance(prefill, PrefillNode) and isinstance(decode, DecodeNode)
        kv = spec.kv_bytes or int(self.kv_fn(spec.input_tokens + spec.output_tokens))
        if kv > decode.kv_capacity:
            self._reject(rec, f"needs {kv} B of decode KV memory; a node has {decode.kv_capacity}")
            return
        rec.advance(Phase.ROUTED, k.now)
        rec.prefill_node = prefill.node_id
        rec.prefill_cluster = prefill.cluster
        rec.decode_node = decode.node_id
        rec.offloaded = placement.offloaded
        rec.kv_bytes = kv
        job = Job(rec, placement, prefill, decode, spec.block_hashes, kv)
        decode.assign()
        if placement.cache_pull is None:
            rec.advance(Phase.PREFILL_QUEUED, k.now)
            prefill.submit(job)
        else:
            start_pull(self, job)

    def _reject(self, rec: RequestRecord, reason: str) -> None:
        rec.reason = reason
        rec.advance(Phase.REJECTED, self.kernel.now)
        self.done += 1
        self.last_done_s = self.kernel.now

    # -- prefill --------------------------------------------------------------------------
    def prefill_started(self, job: Job, start: float) -> float:
        """Match the cache for real, fix the incremental length; returns T(incremental)."""
        rec = job.record
        spec = job.spec
        cluster = self.by_name[job.cluster]
        prefix = 0
        pool = job.prefill.pool or cluster.pool  # the node's own pool where it has one
        if job.prefill.pool is not None:
            hold(pool, job.hashes, counted_blocks(job.placement, self.setup.block_tokens))
        if job.hashes and pool is not None:
            prefix = min(pool.match(job.hashes).usable_tokens, spec.input_tokens - 1)
        inc = spec.input_tokens - prefix
        if not self.setup.routed_queue_tokens:
            job.prefill.queued_tokens += inc - job.inc
            job.inc = inc
        rec.prefix_tokens = prefix
        rec.advance(Phase.PREFILLING, start)
        service_s: float = cluster.time_fn(inc)
        if self.setup.rebalance is not None:
            self.window_inc.append(inc)
            self.window_out.append(spec.output_tokens)
            self.window_prefill.append(PrefillSample(cluster.role, inc, service_s))
        return service_s

    def prefill_pipelined(self, job: Job, start: float, service_s: float) -> None:
        """Start moving KV as layers finish: across the link if remote, over RDMA if local."""
        if job.cluster == job.decode.cluster:
            tail = self.kv_fn(job.spec.input_tokens) / self.setup.num_layers
            self.kernel.at(start + service_s + tail / self.rdma_bytes_per_s, self.kv_arrived, job)
            return
        spec = job.spec
        held = 0
        dst_pool = self.by_name[job.decode.cluster].pool
        if job.hashes and dst_pool is not None and not self.setup.full_kv_transfer:
            held = min(
                dst_pool.peek(job.hashes).kv_blocks * self.setup.block_tokens, spec.input_tokens
            )
        # Only KV the decode side's cluster does not already hold crosses (paper §3.3).
        job.xfer_bytes = self.state_bytes + self.kv_per_token * (spec.input_tokens - held)
        job.p1 = start + service_s
        self.kernel.at(start + service_s / self.setup.num_layers, self._begin_transfer, job)

    def _begin_transfer(self, job: Job) -> None:
        link = self.links[(job.cluster, job.decode.cluster)]
        link.start(job.xfer_bytes, self.kernel.now, job.p1, self.kv_arrived, job)

    def prefill_finished(self, job: Job) -> None:
        rec = job.record
        rec.advance(Phase.TRANSFERRING, self.kernel.now)
        pool = self.by_name[job.cluster].pool
        if job.hashes and pool is not None:
            pool.insert(job.hashes, state_payloads={len(job.hashes) - 1: None})
        hold(job.prefill.pool, job.hashes, len(job.hashes))
        if job.kv_ready:
            self._kv_landed(job)  # its pipeline delay, if any, has passed
        else:
            self.tails += 1

    def kv_arrived(self, job: Job) -> None:
        if self.setup.pipeline_s > 0:
            self.kernel.at(self.kernel.now + self.setup.pipeline_s, self._kv_landed, job)
        else:
            self._kv_landed(job)

    def _kv_landed(self, job: Job) -> None:
        rec = job.record
        if rec.phase == Phase.PREFILLING:
            job.kv_ready = True  # the last bytes beat the prefill-end event at the same instant
            self.tails += 1  # balanced by the decrement below when prefill_finished calls back
            return
        self.tails -= 1
        if self.setup.routed_queue_tokens:
            job.prefill.delivered(job)
        rec.advance(Phase.DECODE_QUEUED, self.kernel.now)
        job.decode.submit(job)

    # -- decode ---------------------------------------------------------------------------
    def decode_admitted(self, job: Job, t_admit: float) -> None:
        job.record.advance(Phase.DECODING, t_admit)
        if self.admission is not None:
            self.admission.first_token()

    def decode_finished(self, job: Job) -> None:
        job.record.advance(Phase.FINISHED, self.kernel.now)
        self.done += 1
        self.last_done_s = self.kernel.now

    # -- long timescale -------------------------------------------------------------------
    def _rebalance(self, _: object) -> None:
        from prfaas.sim.rebalancing import rebalance_step

        rebalance_step(self)
        if self._more_work() and self.setup.rebalance is not None:
            self.kernel.at(self.kernel.now + self.setup.rebalance.period_s, self._rebalance, None)

    def node_drained(self, node: Node) -> None:
        from prfaas.sim.rebalancing import convert_drained

        convert_drained(self, node)


def _name(spec: ClusterSpec) -> str:
    return spec.name
