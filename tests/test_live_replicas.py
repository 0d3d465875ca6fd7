"""Router replicas behind HAProxy: `kill -9` of one loses no request that had not started
streaming on it; the supervisor restarts it on its ports and it serves again within 5 s; with
`--resume-streams` the streams it was serving resume on the other replica, token for token."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from live_support import EMULATED_TOML, SHORT_PROMPT, complete, write_config
from prfaas.bench.client import RequestResult, run_plan
from prfaas.bench.workload import PlannedRequest, Shaping, paper_plan
from prfaas.deploy.healer import Healer
from prfaas.deploy.healing import RestartPolicy
from prfaas.deploy.supervisor import Deployment

TWO_ROUTERS = EMULATED_TOML.replace("[router]\n", "[router]\nreplicas = 2\n", 1)
LONG_STREAMS = 768  # output tokens per request in the resume test
STREAMED = ("disconnected", "incomplete", "stream_error")  # a cut stream, after its first token

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed"),
    pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd not installed"),
]


def _healthy(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    return False


def _serves(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return complete(url, SHORT_PROMPT, timeout=2).status_code == 200
    return False


def _time_until_serving(url: str, since: float, out: dict[str, float]) -> None:
    while time.monotonic() - since < 20:
        if _serves(url):
            out["back_s"] = time.monotonic() - since
            return
        time.sleep(0.05)


@contextlib.contextmanager
def _replicas(tmp_path: Path) -> Iterator[tuple[Deployment, str, list[str]]]:
    """Two replicas behind HAProxy, healed as under `prfaas up`: (deployment, URL, heal log)."""
    dep = Deployment(write_config(tmp_path, TWO_ROUTERS))
    url = dep.start(timeout_s=90)
    stop = threading.Event()
    healer = Healer(dep, RestartPolicy(first_backoff_s=0.2, max_backoff_s=1.0))
    lines: list[str] = []

    def heal() -> None:
        while not stop.is_set():
            lines.extend(healer.tick())
            time.sleep(0.1)

    healing = threading.Thread(target=heal, daemon=True)
    healing.start()
    try:
        # As under `prfaas up`: a warm spare per replica is started a few seconds in.
        deadline = time.monotonic() + 20
        while set(dep.standbys) != set(dep.router_names) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(3.0)  # the spares' imports
        assert url not in dep.router_urls and len(set(dep.router_urls)) == 2  # HAProxy's URL
        yield dep, url, lines
    finally:
        stop.set()
        healing.join()
        dep.stop()


def _plan(output_tokens: int = 192) -> list[PlannedRequest]:
    return paper_plan(rate_rps=8, duration_s=8, length_scale=0.05, arrival="poisson",
                      seed=1, shaping=Shaping(output_tokens=output_tokens, tokens_per_block=16))


def _load_with_kill(dep: Deployment, url: str, killed: dict[str, float],
                    plan: list[PlannedRequest], resume: bool = False) -> list[RequestResult]:
    """The plan through HAProxy; router-1 gets `kill -9` 3 s in (its time back in `killed`)."""
    async def drive() -> list[RequestResult]:
        async def fault() -> None:
            await asyncio.sleep(3.0)
            killed["at"] = time.monotonic()
            dep.kill("router-1", signal.SIGKILL)
            # The killed replica's own URL (its pinned public port), polled during the load.
            await asyncio.to_thread(_time_until_serving, dep.router_urls[1], killed["at"],
                                    killed)

        task = asyncio.create_task(fault())
        results, _ = await run_plan(url, plan, model="emu-model", endpoint="completions",
                                    timeout_s=60, resume_streams=resume)
        await task
        return results

    return asyncio.run(drive())


def test_two_routers_behind_haproxy_survive_a_kill_9(tmp_path: Path) -> None:
    with _replicas(tmp_path) as (dep, url, lines):
        killed: dict[str, float] = {}
        results = _load_with_kill(dep, url, killed, _plan())
        back_s = killed.get("back_s", float("inf"))
        failed = [r for r in results if not r.ok]
        print(f"sent {len(results)}, ok {len(results) - len(failed)}, failed {len(failed)} "
              f"({[(r.error, r.output_tokens) for r in failed]}); the killed replica served "
              f"again {back_s:.2f} s after kill -9")
        # Requests not yet streaming on the killed replica were retried by HAProxy on the
        # other one: a failure is a stream cut after it had started, or a clean OpenAI-style
        # refusal by the live replica (e.g. 503 while the dead one's orphaned streams still
        # hold the decode slots), never a proxy or connection error.
        cut = [r for r in failed if r.error in STREAMED and r.output_tokens > 0]
        refused = [r for r in failed if r.error and r.error.startswith("http_")
                   and '"error"' in (r.detail or "") and "<html" not in (r.detail or "")]
        assert len(cut) + len(refused) == len(failed), failed
        assert any("router-1 exited" in line for line in lines), lines
        assert back_s <= 5.0, f"replica served again only after {back_s:.1f} s"
        assert _healthy(dep.router_urls[1]) and _healthy(url)


def test_the_killed_replicas_streams_resume_on_the_other_one(tmp_path: Path) -> None:
    """`--resume-streams` under the same kill: nothing fails, and every stitched output equals
    the same request's output with no kill (greedy, emulated engine)."""
    with _replicas(tmp_path) as (dep, url, _):
        killed: dict[str, float] = {}
        # Longer streams than above: several are live on the killed replica when it dies.
        plan = _plan(LONG_STREAMS)
        results = _load_with_kill(dep, url, killed, plan, resume=True)
        calm, _ = asyncio.run(run_plan(url, plan, model="emu-model", endpoint="completions",
                                       timeout_s=60, resume_streams=True))
    failed = [(r.index, r.error, r.detail, r.output_tokens) for r in results if not r.ok]
    resumed = [r for r in results if r.resumes]
    print(f"sent {len(results)}, ok {len(results) - len(failed)}, failed {len(failed)}, "
          f"resumed {len(resumed)} (cuts per resumed stream: {[r.resumes for r in resumed]})")
    assert not failed, failed
    assert all(r.ok and not r.resumes for r in calm)
    differ = [r.index for r, c in zip(results, calm, strict=True) if r.text != c.text]
    assert not differ, f"stitched output differs from the uncut one for requests {differ}"
    assert resumed, "no stream was live on the killed replica: the kill tested nothing"
