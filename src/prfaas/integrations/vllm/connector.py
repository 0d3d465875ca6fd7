"""PrfaasConnector: vLLM's KVConnectorBase_V1 + SupportsHMA over prfaas's transfer engine.

Load it with `--kv-transfer-config '{"kv_connector": "PrfaasConnector", "kv_connector_module_path":
"prfaas.integrations.vllm.connector", "kv_role": "kv_both", "kv_load_failure_policy": "recompute",
"kv_connector_extra_config": {...}}'` (keys in `params.parse_config`). The request contract is
MooncakeConnector's: the router mints `transfer_id`; the prefill request carries
`do_remote_decode` and the decode engine's id, the decode request `do_remote_prefill`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vllm.distributed.kv_transfer.kv_connector.v1.base import (
    KVConnectorBase_V1,
    KVConnectorMetadata,
    KVConnectorRole,
    KVConnectorTransferResults,
    SupportsHMA,
)
from vllm.v1.kv_cache_interface import MambaSpec

from prfaas.integrations.vllm.params import parse_config
from prfaas.integrations.vllm.scheduler import PrfaasMeta, SchedulerSide
from prfaas.integrations.vllm.worker import WorkerSide

if TYPE_CHECKING:
    import torch


def _state_groups(kv_cache_config: Any) -> set[int]:
    return {
        g for g, grp in enumerate(kv_cache_config.kv_cache_groups)
        if isinstance(grp.kv_cache_spec, MambaSpec)
    }


class PrfaasConnector(KVConnectorBase_V1, SupportsHMA):  # type: ignore[misc]  # untyped vLLM
    def __init__(self, vllm_config: Any, role: KVConnectorRole, kv_cache_config: Any) -> None:
        super().__init__(vllm_config, role, kv_cache_config)
        tc = vllm_config.kv_transfer_config
        cfg = parse_config(tc.kv_connector_extra_config or {}, str(tc.engine_id))
        self.sched: SchedulerSide | None = None
        self.worker: WorkerSide | None = None
        if role == KVConnectorRole.SCHEDULER:
            self.sched = SchedulerSide(cfg, frozenset(_state_groups(kv_cache_config)))
        else:
            self.worker = WorkerSide(cfg, kv_cache_config, _state_groups(kv_cache_config))

    # ---- worker side -----------------------------------------------------------------------
    def register_kv_caches(self, kv_caches: dict[str, torch.Tensor]) -> None:
        assert self.worker is not None
        self.worker.register(kv_caches)

    def start_load_kv(self, forward_context: Any, **kwargs: Any) -> None:
        assert self.worker is not None
        meta = self._get_connector_metadata()
        assert isinstance(meta, PrfaasMeta)
        self.worker.step(meta)

    def wait_for_layer_load(self, layer_name: str) -> None:
        return  # loads land whole between steps (async): nothing to wait for inside a forward

    def save_kv_layer(self, layer_name: str, kv_layer: Any, attn_metadata: Any, **kw: Any) -> None:
        # vLLM calls this after each attention layer (not after GDN/Mamba layers): push every
        # layer up to this one for the prefills that finish in this step.
        assert self.worker is not None
        self.worker.save_layer(layer_name)

    def wait_for_save(self) -> None:
        assert self.worker is not None
        self.worker.end_forward()  # the layers after the last attention layer

    def get_transfer_results(self, finished_req_ids: set[str]) -> KVConnectorTransferResults:
        assert self.worker is not None
        sending, recving, failed = self.worker.results()
        return KVConnectorTransferResults(sending, recving, failed)

    def get_finished(self, finished_req_ids: set[str]) -> tuple[set[str] | None, set[str] | None]:
        res = self.get_transfer_results(finished_req_ids)
        return res.finished_sending, res.finished_recving

    def shutdown(self) -> None:
        if self.worker is not None:
            self.worker.close()

    # ---- scheduler side --------------------------------------------------------------------
    def get_loaded_kv_cache_group_ids(self, request: Any) -> tuple[int, ...]:
        # The request's own blocks arrive for every group, not only prefix-cacheable ones.
        return tuple(self._kv_cache_config.transfer_group_ids)

    def on_new_request(self, request: Any) -> None:
        assert self.sched is not None
        self.sched.on_new_request(request)

    def get_num_new_matched_tokens(self, request: Any, num_computed: int) -> tuple[int, bool]:
        assert self.sched is not None
        return self.sched.get_num_new_matched_tokens(request, num_computed)

    def update_state_after_alloc(self, request: Any, blocks: Any, num_external_tokens: int) -> None:
        assert self.sched is not None
        self.sched.update_state_after_alloc(request, blocks, num_external_tokens)

    def build_connector_meta(self, scheduler_output: Any) -> KVConnectorMetadata:
        assert self.sched is not None
        return self.sched.build_meta(scheduler_output)

    def update_connector_output(self, connector_output: Any) -> None:
        assert self.sched is not None
        self.sched.transfers_done(connector_output.finished_sending,
                                  connector_output.finished_recving)

    def request_finished(self, request: Any, block_ids: list[int]) -> tuple[bool, None]:
        assert self.sched is not None
        return self.sched.finished(request, (block_ids,))

    def request_finished_all_groups(
        self, request: Any, block_ids: tuple[list[int], ...]
    ) -> tuple[bool, None]:
        assert self.sched is not None
        return self.sched.finished(request, block_ids)

    def has_pending_push_work(self) -> bool:
        return self.sched is not None and self.sched.pending_push()
