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

s = SchedulerSide(ConnectorConfig(engine_id="d", secret=b"x" * 16))
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
print("ok")
'''


def test_scheduler_contract_in_the_vllm_env() -> None:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    out = subprocess.run([VLLM_PY, "-c", SCRIPT], env=env, capture_output=True, text=True,
                         timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")
