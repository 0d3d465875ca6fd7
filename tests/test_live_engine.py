"""The default live deployment (examples/local.toml, real qwen3.5-tiny compute in every worker)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from live_support import arm_fault, complete
from prfaas.deploy.supervisor import Deployment

pytestmark = [pytest.mark.slow, pytest.mark.engine]
pytest.importorskip("torch")

LOCAL = Path(__file__).resolve().parents[1] / "examples" / "local.toml"
MODEL = "qwen3.5-tiny"
# local.toml's t is planned from the warm-up pass (machine-dependent): these tests pin t = 256,
# as an operator would, so PROMPT is offloaded and a short follow-up turn is not (and the latency
# rule, active once the warm-up gave it profiles, off: both sides are idle and equally fast here).
PINNED = {"threshold_tokens": 256, "min_pull_tokens": 64, "latency_routing": False}
PROMPT = "".join(f"line {i}: prefill as a service moves kv across datacenters. " for i in range(8))


@pytest.fixture(scope="module")
def started() -> Iterator[tuple[Deployment, dict[str, Any]]]:
    """The deployment and its router's state as `prfaas up` left it (before the pin)."""
    dep = Deployment(LOCAL, fault_hooks=True)
    dep.start(timeout_s=120)
    try:
        planned = dep.control("GET", "/internal/state").json()
        body = {"name": "prfaas", "params": PINNED}
        dep.control("POST", "/internal/policy", json=body).raise_for_status()
        yield dep, planned
    finally:
        dep.stop()


@pytest.fixture(scope="module")
def dep(started: tuple[Deployment, dict[str, Any]]) -> Deployment:
    return started[0]


@pytest.fixture(scope="module")
def url(dep: Deployment) -> str:
    return dep.url


def _reference(prompt: str, max_tokens: int) -> str:
    """The same model in this process: one uninterrupted generate, no router, no transfer."""
    from prfaas.model.engine.engine import Engine
    from prfaas.model.engine.sampling import SamplingParams

    engine = Engine.from_preset(MODEL, seed=0, num_threads=1)
    gen = engine.generate(engine.tokenizer.encode(prompt), SamplingParams(max_tokens=max_tokens))
    return str(gen.text)


def _decisions(url: str) -> list[dict[str, object]]:
    result: list[dict[str, object]] = httpx.get(f"{url}/dashboard/state").json()["decisions"]
    return result


def test_the_router_serves_with_the_t_its_warmup_planned(
    started: tuple[Deployment, dict[str, Any]],
) -> None:
    dep, planned = started
    control = planned["control"]
    assert control["warmup"] == "done" and dep.plan_line == control["startup"]
    line = control["startup"]
    assert re.search(r"planned from warm-up \(\d+ samples, [\d.]+ s\)", line), line
    m = re.search(r"; t=(\d+), table=", line)
    assert m is not None and "t=planner" in line, line
    assert planned["threshold_tokens"] == control["threshold_tokens"] == int(m[1])
    fit = control["warmup_fit"]
    assert fit["prfaas_prefill_samples"] >= 3 and fit["pd_prefill_samples"] >= 3
    assert 0 < fit["pd_prefill_ms"]["64"] < fit["pd_prefill_ms"]["2048"]
    assert fit["decode_step_ms"] > 0
    # The pin (an explicit t, like one written in the file) wins and the line says so.
    pinned = dep.control("GET", "/internal/state").json()
    assert pinned["threshold_tokens"] == 256 and "t=file" in pinned["control"]["startup"]
    assert "planned from warm-up" in pinned["control"]["startup"]  # the rest is still planned
    assert httpx.get(f"{dep.url}/dashboard/state").json()["threshold_tokens"] == 256


def test_offloaded_and_local_prefill_give_the_single_process_completion(
    dep: Deployment, url: str
) -> None:
    assert len(PROMPT) > PINNED["threshold_tokens"]
    offloaded = complete(url, PROMPT, max_tokens=16, model=MODEL, timeout=120)
    assert offloaded.status_code == 200, offloaded.text
    assert _decisions(url)[0]["prefill"] == "prfaas-0"
    dep.control("POST", "/internal/policy", json={"name": "homogeneous"}).raise_for_status()
    try:
        local = complete(url, PROMPT, max_tokens=16, model=MODEL, timeout=120)
    finally:
        dep.control("POST", "/internal/policy", json={"name": "prfaas"}).raise_for_status()
    assert local.status_code == 200, local.text
    assert _decisions(url)[0]["prefill"] == "pd-p0"
    text = offloaded.json()["choices"][0]["text"]
    assert text and text == local.json()["choices"][0]["text"]
    assert text == _reference(PROMPT, 16)


def test_pulled_prefix_resumes_to_the_same_completion(url: str) -> None:
    base = PROMPT.replace("line", "row")
    assert complete(url, base, max_tokens=4, model=MODEL, timeout=120).status_code == 200
    follow = base + "and one more short turn"  # a short increment: local prefill, prefix pulled
    resp = complete(url, follow, max_tokens=12, model=MODEL, timeout=120)
    assert resp.status_code == 200, resp.text
    decision = _decisions(url)[0]
    assert decision["prefill"] == "pd-p0" and "pull" in str(decision["reason"])
    assert resp.json()["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
    assert resp.json()["choices"][0]["text"] == _reference(follow, 12)


def _counter(url: str, name: str, label: str) -> float:
    """A counter's value from the public /metrics (0 before its first increment)."""
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(f"{name}{{{label}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _wan_bytes(url: str) -> float:
    return _counter(url, "prfaas_transfer_bytes_total", 'link="prfaas->pd"')


def _held(url: str) -> float:
    return _counter(url, "prfaas_kv_held_tokens_total", 'src_cluster="prfaas"')


def test_only_the_missing_kv_crosses_when_the_decode_cluster_holds_the_prefix(url: str) -> None:
    """pd-p0 prefilled a short prompt; a long follow-up is offloaded and prfaas-0 leaves that
    prefix's KV out: pd-d0 takes it from pd-p0, and the completion is the single process's."""
    base = "system: you answer briefly and exactly. " * 5  # 200 tokens < t: pd-p0, 6 blocks
    follow = base + "".join(f"question {i}: how many bytes cross the link? " for i in range(9))
    other = "".join(f"another {i}: with nothing held, the whole cache crosses. " for i in range(11))
    other = other[: len(follow)]  # the same length, no prefix held anywhere
    assert complete(url, base, max_tokens=2, model=MODEL, timeout=120).status_code == 200
    assert _decisions(url)[0]["prefill"] == "pd-p0"
    held0, wan0 = _held(url), _wan_bytes(url)
    resp = complete(url, follow, max_tokens=12, model=MODEL, timeout=120)
    assert resp.status_code == 200, resp.text
    assert _decisions(url)[0]["prefill"] == "prfaas-0"
    held = _held(url) - held0
    assert held == 6 * 32
    wan1 = _wan_bytes(url)
    assert complete(url, other, max_tokens=2, model=MODEL, timeout=120).status_code == 200
    assert _decisions(url)[0]["prefill"] == "prfaas-0"
    saved = (_wan_bytes(url) - wan1) - (wan1 - wan0)
    assert saved == pytest.approx(held * _attention_bytes_per_token(), rel=0.02)
    assert resp.json()["choices"][0]["text"] == _reference(follow, 12)


def test_a_held_prefix_evicted_before_the_decode_node_asks_costs_one_full_kv_retry(
    dep: Deployment, url: str
) -> None:
    base = "system: evicted right before the ask. " * 5  # pd-p0 holds it ...
    follow = base + "".join(f"question {i}: and still the same completion? " for i in range(9))
    assert complete(url, base, max_tokens=2, model=MODEL, timeout=120).status_code == 200
    assert _decisions(url)[0]["prefill"] == "pd-p0"
    retries0 = _counter(url, "prfaas_retries_total", 'stage="held"')
    arm_fault(dep, "pd-p0", "evict_before_push")  # ... until pd-d0 asks for it
    resp = complete(url, follow, max_tokens=12, model=MODEL, timeout=120)
    assert resp.status_code == 200, resp.text
    assert _counter(url, "prfaas_retries_total", 'stage="held"') == retries0 + 1
    assert resp.json()["choices"][0]["text"] == _reference(follow, 12)


def _attention_bytes_per_token() -> int:
    """KV bytes per token on the wire (local.toml: float32) of MODEL's attention layers."""
    import math

    from prfaas.model.engine.engine import Engine

    engine = Engine.from_preset(MODEL, seed=0, num_threads=1)
    return sum(
        math.prod(t.shape) // t.shape[-2] * 4
        for s in engine.layer_template()
        if s.kind == "attention"
        for t in s.tensors.values()
    )


def test_openai_client_completes_and_streams(url: str) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    done = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0)
    assert done.usage is not None and done.usage.prompt_tokens == len(PROMPT.encode())
    stream = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in stream if c.choices) == done.choices[0].text
    chat = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hello"}], max_tokens=4, stream=True
    )
    assert sum(1 for c in chat if c.choices and c.choices[0].delta.content is not None) >= 1


def test_router_tokenizes_like_the_engine_without_importing_torch() -> None:
    """The router shares the engine's byte tokenizer but must stay torch-free."""
    import subprocess
    import sys

    code = (
        "import sys; from prfaas.worker.bytetok import router_tokenizer; "
        "import prfaas.router.backend; t = router_tokenizer(None); "
        "assert t.decode(t.encode('héllo €')) == 'héllo €'; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
