"""Live deployments with the emulated engine: `prfaas up`, the OpenAI client, routing, faults."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from live_support import (
    LONG_PROMPT,
    SHORT_PROMPT,
    arm_fault,
    complete,
    operator_post,
    port_free,
    process_gone,
    state,
    write_config,
)
from prfaas.deploy.supervisor import Deployment
from test_live_recovery import metric

pytestmark = pytest.mark.slow


def _start(tmp: Path) -> Deployment:
    dep = Deployment(write_config(tmp), fault_hooks=True)
    dep.start(timeout_s=60)
    return dep


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """One deployment for the tests that leave it healthy (each uses its own prompts)."""
    dep = _start(tmp_path_factory.mktemp("shared"))
    try:
        yield dep
    finally:
        dep.stop()


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    """A deployment of its own, for a test that kills part of it."""
    dep = _start(tmp_path)
    try:
        yield dep
    finally:
        dep.stop()


def long_prompt(tag: str) -> str:
    """A prompt nothing else cached (its first block differs), long enough to be offloaded."""
    return f"[{tag}] {LONG_PROMPT}"


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_prfaas_up_serves_and_stops_cleanly(tmp_path: Path, stop_signal: int) -> None:
    config = write_config(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "prfaas", "up", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        if not first.startswith("prfaas is up: http://"):
            proc.kill()
            pytest.fail(f"prfaas up did not come up: {first!r}; stderr: {proc.communicate()[1]}")
        url = first.split()[3]
        curl = proc.stdout.readline()
        assert curl.startswith("try: curl") and f"{url}/v1/completions" in curl
        resp = complete(url, SHORT_PROMPT)
        assert resp.status_code == 200, resp.text
        assert resp.json()["usage"]["completion_tokens"] == 8
        children = _children(proc.pid)
        # etcd + WAN emulator + router + 3 workers + the reaper, and the router's warm spare
        # once it has started (3 s after the deployment is up)
        assert len(children) in (7, 8)
        proc.send_signal(stop_signal)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert all(process_gone(pid) for pid in children)
    assert port_free(url)


def test_routes_by_threshold_on_the_uncached_length(shared: Deployment) -> None:
    url, prompt = shared.url, long_prompt("route")
    assert complete(url, SHORT_PROMPT).status_code == 200
    assert complete(url, prompt).status_code == 200
    decisions = httpx.get(f"{url}/dashboard/state").json()["decisions"]
    assert [d["prefill"] for d in decisions[:2]] == ["prfaas-0", "pd-p0"]
    assert [d["input_tokens"] for d in decisions[:2]] == [len(prompt), len(SHORT_PROMPT)]
    # the bandwidth monitor learns of the KV bytes from the sender's next telemetry
    deadline = time.monotonic() + 5
    while state(shared)["links"]["prfaas->pd"]["bytes_total"] == 0:  # type: ignore[index]
        assert time.monotonic() < deadline, "no KV bytes reported on the prfaas->pd link"
        time.sleep(0.05)


def test_same_request_offloaded_or_local_gives_the_same_completion(deployment: Deployment) -> None:
    url = deployment.url
    offloaded = complete(url, LONG_PROMPT, max_tokens=12).json()
    operator_post(deployment, "/internal/policy", {"name": "homogeneous"})
    local = complete(url, LONG_PROMPT, max_tokens=12).json()
    decisions = httpx.get(f"{url}/dashboard/state").json()["decisions"]
    assert [d["prefill"] for d in decisions[:2]] == ["pd-p0", "prfaas-0"]
    assert offloaded["choices"][0]["text"] == local["choices"][0]["text"]
    assert len(offloaded["choices"][0]["text"]) == 12


def test_openai_client_completes_and_streams(shared: Deployment) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{shared.url}/v1", api_key="unused")
    done = client.completions.create(
        model="emu-model", prompt=LONG_PROMPT, max_tokens=10, temperature=0
    )
    assert done.choices[0].finish_reason == "length" and len(done.choices[0].text) == 10
    stream = client.completions.create(
        model="emu-model", prompt=LONG_PROMPT, max_tokens=10, temperature=0, stream=True
    )
    streamed = "".join(c.choices[0].text for c in stream if c.choices)
    assert streamed == done.choices[0].text
    chat = client.chat.completions.create(
        model="emu-model", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    assert chat.choices[0].message.content and len(chat.choices[0].message.content) == 5


def test_cross_cluster_cache_pull_reuses_the_prefix(shared: Deployment) -> None:
    url, prompt = shared.url, long_prompt("pull")
    complete(url, prompt)  # cached on prfaas-0
    follow_up = prompt + "and again"  # short increment: prefilled locally, prefix pulled
    resp = complete(url, follow_up).json()
    decision = httpx.get(f"{url}/dashboard/state").json()["decisions"][0]
    assert decision["prefill"] == "pd-p0" and "pull" in decision["reason"]
    assert resp["usage"]["prompt_tokens_details"]["cached_tokens"] >= 16 * 10


def test_prefill_worker_death_mid_request_is_retried_locally(deployment: Deployment) -> None:
    url = deployment.url
    prompt = LONG_PROMPT.upper()  # nothing cached: the policy offloads it to prfaas-0
    arm_fault(deployment, "prfaas-0", "die_mid_prefill")
    t0 = time.monotonic()
    resp = complete(url, prompt)
    assert resp.status_code == 200, resp.text
    assert time.monotonic() - t0 < 15
    assert deployment.procs["prfaas-0"].wait(timeout=10) == 17  # it really died mid-transfer
    decision = httpx.get(f"{url}/dashboard/state").json()["decisions"][0]
    assert decision["prefill"] == "pd-p0" and "retried" in decision["reason"]
    # the retried completion is the request's own (emulated tokens are a function of the prompt)
    again = complete(url, prompt).json()["choices"][0]["text"]
    assert resp.json()["choices"][0]["text"] == again
    # stopping leaves no process (the dead one included) and no listening port behind
    pids, urls = deployment.pids(), [url, *deployment.node_urls.values()]
    deployment.stop()
    assert all(process_gone(pid) for pid in pids.values())
    assert all(port_free(u) for u in urls)


def test_failed_transfer_is_retried_locally(shared: Deployment) -> None:
    url = shared.url
    arm_fault(shared, "prfaas-0", "fail_transfer")
    resp = complete(url, long_prompt("transfer"))
    assert resp.status_code == 200, resp.text
    decision = httpx.get(f"{url}/dashboard/state").json()["decisions"][0]
    assert decision["prefill"] == "pd-p0" and "retried" in decision["reason"]
    assert shared.procs["prfaas-0"].poll() is None  # a transfer fault is not a crash


def test_decode_worker_death_gives_a_clear_error_not_a_hang(deployment: Deployment) -> None:
    url = deployment.url
    arm_fault(deployment, "pd-d0", "die_in_decode", after_tokens=3)
    t0 = time.monotonic()
    resp = complete(url, SHORT_PROMPT, max_tokens=50, timeout=30)
    assert time.monotonic() - t0 < 15
    assert resp.status_code in (502, 503)
    assert "decode" in resp.json()["error"]["message"]
    # with no decode node left, new requests fail fast with 503 instead of waiting
    deployment.procs["pd-d0"].wait(timeout=10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and state(deployment)["nodes"]["pd-d0"]["alive"]:  # type: ignore[index]
        time.sleep(0.1)
    resp = complete(url, SHORT_PROMPT, timeout=10)
    assert resp.status_code == 503, resp.text


def test_router_metrics_expose_the_scheduler_state(shared: Deployment) -> None:
    """/metrics carries queues, offload fraction, t, egress, transfer latency, TTFT/TPOT, hits."""
    from prometheus_client.parser import text_string_to_metric_families

    url = shared.url
    assert complete(url, long_prompt("metrics")).status_code == 200  # offloaded: crosses the link
    assert complete(url, SHORT_PROMPT).status_code == 200
    deadline = time.monotonic() + 5
    while True:  # gauges of queues and links refresh with the telemetry
        families = {
            f.name: f for f in text_string_to_metric_families(httpx.get(f"{url}/metrics").text)
        }
        if "prfaas_queue_requests" in families and families["prfaas_queue_requests"].samples:
            break
        assert time.monotonic() < deadline, f"no queue gauges in {sorted(families)}"
        time.sleep(0.1)
    for name in (
        "prfaas_offload_fraction",
        "prfaas_threshold_tokens",
        "prfaas_egress_gbps",
        "prfaas_transfer_seconds",
        "prfaas_ttft_seconds",
        "prfaas_tpot_seconds",
        "prfaas_prefix_hit_ratio",
    ):
        assert name in families, f"{name} missing from /metrics"
    value = {s.name: s.value for f in families.values() for s in f.samples}
    assert 0.0 < value["prfaas_offload_fraction"] < 1.0
    assert value["prfaas_threshold_tokens"] > 0
    assert value["prfaas_ttft_seconds_count"] >= 2
    counts = [s for s in families["prfaas_transfer_seconds"].samples if s.name.endswith("_count")]
    assert any(s.labels.get("link") == "prfaas->pd" and s.value >= 1 for s in counts)


@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"temperature": 0.9, "seed": 7}],
                         ids=["greedy", "seeded"])
def test_a_client_resumes_a_stream_from_its_token_ids(shared: Deployment,
                                                      sampling: dict[str, float]) -> None:
    """The docs' recipe with the official client: the ids a stream delivered, sent back with
    `resume_token_ids`, give the rest of the same generation (offloaded and local, both APIs)."""
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{shared.url}/v1", api_key="unused", max_retries=0)
    ids_on = {"return_token_ids": True}
    for prompt in (long_prompt("resume"), SHORT_PROMPT):
        whole = client.completions.create(model="emu-model", prompt=prompt, max_tokens=24,
                                          extra_body=ids_on, **sampling).choices[0]
        ids = list(whole.token_ids)  # type: ignore[attr-defined]
        assert len(ids) == 24 and len(whole.text) == 24  # byte tokens: a character each
        for cut in (1, 13, 23):
            stream = client.completions.create(
                model="emu-model", prompt=prompt, max_tokens=24, stream=True,
                extra_body={**ids_on, "resume_token_ids": ids[:cut]}, **sampling)
            chunks = [c.choices[0] for c in stream if c.choices]
            rest = "".join(c.text for c in chunks)
            assert whole.text[:cut] + rest == whole.text, (prompt[:8], cut)
            assert ids[:cut] + [t for c in chunks for t in c.token_ids] == ids
    messages = [{"role": "user", "content": "resume me"}]
    chat = client.chat.completions.create(model="emu-model", messages=messages, max_tokens=12,
                                          extra_body=ids_on, **sampling)  # type: ignore[arg-type]
    ids = list(chat.choices[0].token_ids)  # type: ignore[attr-defined]
    rest = client.chat.completions.create(
        model="emu-model", messages=messages, max_tokens=12,  # type: ignore[arg-type]
        extra_body={**ids_on, "resume_token_ids": ids[:5]}, **sampling)
    assert (chat.choices[0].message.content or "")[:5] + (rest.choices[0].message.content or "") \
        == chat.choices[0].message.content
    assert rest.usage is not None and rest.usage.completion_tokens == 12


def test_finished_requests_are_not_counted_as_cancelled(shared: Deployment) -> None:
    """A generation closed after its last token is a normal end: once every completed request
    showed up in prfaas_cancelled_total{stage="decode"} (the edge closes the stream after the
    finish chunk), so the counter could not tell a client that left."""
    url = shared.url
    before = metric(url, "prfaas_cancelled_total")
    assert complete(url, "[not cancelled] plain", timeout=30).status_code == 200
    body = {"model": "emu-model", "prompt": "[not cancelled] streamed", "max_tokens": 8,
            "stream": True}
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=30) as resp:
        assert resp.status_code == 200
        assert b"data: [DONE]" in b"".join(resp.iter_bytes())
    time.sleep(0.3)  # the generators' close runs after the last bytes went out
    assert metric(url, "prfaas_cancelled_total") == before
