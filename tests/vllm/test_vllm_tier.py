"""The vLLM tier: real vLLM instances with the prfaas connector behind the prfaas router.

Runs only when PRFAAS_VLLM_PY names the .venv-vllm interpreter (`make vllm-test` sets it); it
starts three vLLM processes, so it takes minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

VLLM_PY = os.environ.get("PRFAAS_VLLM_PY", "")
pytestmark = [
    pytest.mark.skipif(
        not VLLM_PY or not Path(VLLM_PY).exists(),
        reason="the vLLM tier needs .venv-vllm: run `make vllm-env && make vllm-test`",
    ),
    pytest.mark.timeout(2400),  # the shared fixture starts three vLLM processes (minutes)
]
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("vllm-demo")
    env = dict(os.environ, PYTHONPATH=str(SRC))
    proc = subprocess.Popen([sys.executable, "-m", "prfaas.integrations.vllm.demo",
                             "--vllm-python", VLLM_PY, "--out", str(out),
                             "--router-port", "18290"], env=env)
    try:
        assert proc.wait(timeout=2000) == 0
    finally:
        if proc.poll() is None:
            proc.terminate()  # the demo stops its vLLM processes on SIGTERM
            proc.wait(timeout=120)
    result: dict[str, Any] = json.loads((out / "result.json").read_text())
    result["model_info"] = json.loads((out / "model" / "prfaas_tiny.json").read_text())
    return result


def test_decode_computes_only_the_last_prompt_token(demo: dict[str, Any]) -> None:
    # vLLM always recomputes one prompt token for the first logits (as on a full prefix hit).
    assert demo["decode_prompt_tokens_computed"] == demo["requests"]
    assert demo["transfers"] == demo["requests"]


def test_kv_bytes_equal_layers_times_blocks(demo: dict[str, Any]) -> None:
    assert demo["bytes_match_layers_x_blocks"] is True
    assert demo["kv_bytes"] > 0


def test_prefills_are_pushed_layer_by_layer(demo: dict[str, Any]) -> None:
    # Every router prefill finishes in one step (after vLLM's block-aligned split): all of them
    # go layer-wise, with the block table the worker had (never another one at finish).
    assert demo["layerwise_pushes"] == demo["transfers"]
    assert demo["layerwise_block_mismatches"] == 0


def test_policy_splits_between_prfaas_and_local(demo: dict[str, Any]) -> None:
    assert 0 < demo["offloaded"] < demo["requests"]


def test_greedy_outputs_match_one_instance(demo: dict[str, Any]) -> None:
    # Through the router, 20 prompts whose prefill split point is a multiple of 128 tokens.
    assert demo["outputs_equal"] == demo["requests"] == 20


def test_token_level_agreement_at_any_split_point(demo: dict[str, Any]) -> None:
    tl = demo["token_level"]
    assert tl["vllm_own_split"]["sequence_equal"] == tl["vllm_own_split"]["prompts"]
    if not demo["model_info"]["hybrid"]:
        # fp32 attention only: a transferred prefix is bit-exact wherever the split falls.
        assert tl["sequence_equal"] == tl["prompts"]
        assert tl["max_first_logprob_diff"] < 1e-4


def test_event_fed_index_predicts_vllm_prefix_hits(demo: dict[str, Any]) -> None:
    first, *later = demo["prefix_reuse"]
    assert first["predicted_prefix_tokens"] == 0
    for r in later:
        assert r["predicted_prefix_tokens"] > 0
        assert r["vllm_hit_tokens"] == r["predicted_prefix_tokens"]


def test_a_cache_pull_lands_the_prefix_in_the_prefill_instances_cache(demo: dict[str, Any]) -> None:
    pull = demo["cache_pull"]
    assert pull["ok"] is True and pull["prefix_tokens"] >= 512
    # pd-p0 loaded the whole prefix over the connector (and computed one token after it)...
    assert pull["loaded_tokens"] == pull["prefix_tokens"]
    # ... and its prefill of a longer prompt then found the whole prefix in its own cache.
    assert pull["dst_hit_tokens"] == pull["prefix_tokens"]


def test_killing_the_prfaas_instance_loses_nothing(demo: dict[str, Any]) -> None:
    assert demo["kill"]["lost"] == 0 and demo["kill"]["served"] == demo["kill"]["requests"]
