"""The connector's scheduler half inside .venv-vllm (vLLM imported, no engine started)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

VLLM_PY = os.environ.get("PRFAAS_VLLM_PY", "")
pytestmark = pytest.mark.skipif(
    not VLLM_PY or not Path(VLLM_PY).exists(),
    reason="needs .venv-vllm: run `make vllm-env && make vllm-test`",
)
SRC = Path(__file__).resolve().parents[2] / "src"

SCRIPT = r'''
from types import SimpleNamespace as NS
from vllm.v1.request import RequestStatus
from prfaas.integrations.vllm.params import ConnectorConfig
from prfaas.integrations.vllm.scheduler import SchedulerSide

s = SchedulerSide(ConnectorConfig(engine_id="d", secret=b"x" * 16), frozenset({1}))
blocks = NS(get_unhashed_block_ids_all_groups=lambda: [[7, 8], [0, 3]])

# Prefill side: the last prompt token is dropped (h(N-1)) once, and blocks are held to send.
p = NS(request_id="p", num_prompt_tokens=5, prompt_token_ids=[1, 2, 3, 4, 5],
       _all_token_ids=[1, 2, 3, 4, 5], max_tokens=9, num_computed_tokens=4,
       status=RequestStatus.FINISHED_LENGTH_CAPPED,
       kv_transfer_params={"do_remote_decode": True, "transfer_id": "t1", "remote_engine_id": "d"})
s.on_new_request(p); s.on_new_request(p)
assert p.prompt_token_ids == [1, 2, 3, 4] and p.num_prompt_tokens == 4 and p.max_tokens == 1
assert s.finished(p, ([5, 6], [9])) == (True, None)
meta = s.build_meta()
assert meta.send["p"].block_ids == ((5, 6), (9,)) and meta.send["p"].engine == "d"
assert s.pending_push()
s.transfers_done({"p"}, None)
assert not s.pending_push()

# An aborted prefill frees at once and sends nothing.
a = NS(**{**vars(p), "request_id": "a", "status": RequestStatus.FINISHED_ABORTED})
assert s.finished(a, ([1],)) == (False, None) and not s.build_meta().send

# Decode side: N-1 tokens load asynchronously into the unhashed blocks.
d = NS(request_id="d1", prompt_token_ids=list(range(10)), status=RequestStatus.WAITING,
       kv_transfer_params={"do_remote_prefill": True, "transfer_id": "t2"})
assert s.get_num_new_matched_tokens(d, 0) == (9, True)
assert s.get_num_new_matched_tokens(d, 4) == (5, True)
s.update_state_after_alloc(d, blocks, 9)
recv = s.build_meta().recv["d1"]
assert recv.block_ids == ((7, 8), (0, 3)) and not recv.cancel
# Aborted while the KV is still on the way: the worker is told to cancel, blocks free now.
d.status = RequestStatus.FINISHED_ABORTED
assert s.finished(d, ([7, 8], [3])) == (False, None)
assert s.build_meta().recv["d1"].cancel

# Loaded normally: no cancel when it finishes later.
e = NS(request_id="e", prompt_token_ids=list(range(10)), status=RequestStatus.WAITING,
       kv_transfer_params={"do_remote_prefill": True, "transfer_id": "t3"})
s.update_state_after_alloc(e, blocks, 9)
s.build_meta()
s.transfers_done(None, {"e"})
e.status = RequestStatus.FINISHED_STOPPED
assert s.finished(e, ([7], [3])) == (False, None) and not s.build_meta().recv
# Layer-wise: a prefill whose whole prompt runs in this step is pushed during the forward; its
# blocks are freed when it finishes (nothing held, nothing reported as sending).
lw = NS(request_id="lw", num_prompt_tokens=9, prompt_token_ids=list(range(9)),
        _all_token_ids=list(range(9)), max_tokens=5, num_computed_tokens=8,
        status=RequestStatus.FINISHED_LENGTH_CAPPED,
        kv_transfer_params={"do_remote_decode": True, "transfer_id": "t4", "remote_engine_id": "d"})
ch = NS(**{**vars(lw), "request_id": "ch", "kv_transfer_params": {
    "do_remote_decode": True, "transfer_id": "t5", "remote_engine_id": "d"}})
off = NS(**{**vars(lw), "request_id": "off", "kv_transfer_params": {
    "do_remote_decode": True, "transfer_id": "t6", "prfaas_layerwise": False}})
for r in (lw, ch, off):
    s.on_new_request(r)
out = NS(scheduled_new_reqs=[NS(req_id="lw", num_computed_tokens=0, block_ids=([1, 2], [3])),
                             NS(req_id="ch", num_computed_tokens=0, block_ids=([4], [5])),
                             NS(req_id="off", num_computed_tokens=0, block_ids=([6], [7]))],
         num_scheduled_tokens={"lw": 8, "ch": 4, "off": 8})
meta = s.build_meta(out)
assert set(meta.early) == {"lw"} and meta.early["lw"].block_ids == ((1, 2), (3,))
assert meta.early["lw"].transfer_id == "t4" and meta.early["lw"].num_tokens == 8
assert s.finished(lw, ([1, 2], [3])) == (False, None) and s.early_mismatches == 0
# A prefill split in two steps (vLLM's align mode does that): pushed during its last step, with
# the block table the worker has by then (the new blocks appended).
step2 = NS(scheduled_new_reqs=[], num_scheduled_tokens={"ch": 4},
           scheduled_cached_reqs=NS(req_ids=["ch"], resumed_req_ids=set(),
                                    new_block_ids=[([8], [])], num_computed_tokens=[4]))
meta = s.build_meta(step2)
assert meta.early["ch"].block_ids == ((4, 8), (5,)) and not meta.send
assert s.finished(ch, ([4, 8], [5])) == (False, None) and s.early_mismatches == 0
assert s.finished(off, ([6], [7])) == (True, None)  # layer-wise off for this request
# Align mode: the state group's checkpoint block becomes the null block after the step; the push
# (which also held the checkpoint) still ends with the final state. Anything else is counted.
from prfaas.integrations.vllm.scheduler import same_blocks
assert same_blocks(((1, 2), (0, 74, 81)), ([1, 2], [0, 0, 81]), frozenset({1}))
assert not same_blocks(((1, 2), (0, 74, 81)), ([1, 3], [0, 0, 81]), frozenset({1}))
assert not same_blocks(((1, 2), (0, 81, 74)), ([1, 2], [0, 0, 81]), frozenset({1}))
assert set(s.build_meta(NS(scheduled_new_reqs=[], num_scheduled_tokens={})).send) == {"off"}
print("ok")
'''


def test_scheduler_contract_in_the_vllm_env() -> None:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    out = subprocess.run([VLLM_PY, "-c", SCRIPT], env=env, capture_output=True, text=True,
                         timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")
