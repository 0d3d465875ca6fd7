"""`prfaas bench --resume-streams`: a stream whose connection breaks after some tokens is resent
with the token ids it delivered, and the pieces stitch into the uncut output."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from prfaas.bench.client import run_plan
from prfaas.bench.workload import Shaping, paper_plan
from prfaas.cli import main
from prfaas.server import FakeBackend, ServerThread, create_app

CUT_AFTER = 3  # SSE chunks a first attempt gets before its connection breaks


def cutting(app: Any, cut_after: int) -> Any:
    """The app, but a request without `resume_token_ids` loses its connection after
    `cut_after` body chunks (as when the router replica serving it is killed)."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        msgs, more = [], True
        while more:
            msg = await receive()
            msgs.append(msg)
            more = msg.get("more_body", False)
        resumed = b"resume_token_ids" in b"".join(m.get("body", b"") for m in msgs)
        pending, sent = list(msgs), 0

        async def replay() -> Any:
            return pending.pop(0) if pending else await receive()

        async def cut(msg: dict[str, Any]) -> None:
            nonlocal sent
            if msg["type"] == "http.response.body" and msg.get("body") and not resumed:
                sent += 1
                if sent > cut_after:
                    raise ConnectionAbortedError("the replica died")  # uvicorn drops the socket
            await send(msg)

        await app(scope, replay, cut)

    return wrapped


def _plan() -> Any:
    return paper_plan(rate_rps=20, duration_s=0.3, length_scale=0.001, arrival="uniform",
                      seed=3, shaping=Shaping(output_tokens=10))


def _run(url: str, resume: bool) -> Any:
    results, _ = asyncio.run(run_plan(url, _plan(), model="m", endpoint="completions",
                                      timeout_s=10, resume_streams=resume))
    return results


def test_cut_streams_are_resumed_and_stitched_to_the_uncut_output() -> None:
    app = create_app(FakeBackend(), model_name="m", max_context_tokens=10_000)
    with ServerThread(app) as srv:
        uncut = _run(srv.url, resume=True)
    with ServerThread(cutting(app, CUT_AFTER)) as srv:
        plain = _run(srv.url, resume=False)
        stitched = _run(srv.url, resume=True)
    assert uncut and all(r.ok and r.resumes == 0 for r in uncut)
    assert all(not r.ok and r.error in ("disconnected", "incomplete") for r in plain)
    assert all(r.ok and r.resumes == 1 for r in stitched), stitched
    assert [r.text for r in stitched] == [r.text for r in uncut]
    assert all(r.output_tokens == 10 for r in stitched)


def test_the_cli_counts_resumes(capsys: pytest.CaptureFixture[str]) -> None:
    app = create_app(FakeBackend(), model_name="m", max_context_tokens=10_000)
    argv = ["bench", "--no-progress", "--json", "--workload", "paper", "--rate", "20",
            "--duration", "0.25", "--length-scale", "0.001", "--output-tokens", "8"]
    with ServerThread(cutting(app, CUT_AFTER)) as srv:
        code = main([*argv, "--url", srv.url, "--resume-streams"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["num_ok"] == report["num_requests"] == 5
    assert report["num_resumed"] == 5


def complete_resuming(client: Any, tries: int = 6, **request: Any) -> str:
    """docs/reliability.md's recipe for the official client, verbatim but for the types."""
    import httpx
    import openai

    text, ids, finish = "", [], None
    for _ in range(tries):
        extra = {"return_token_ids": True, **({"resume_token_ids": ids} if ids else {})}
        try:
            for chunk in client.completions.create(**request, stream=True, extra_body=extra):
                for choice in chunk.choices:
                    text += choice.text
                    ids += choice.token_ids
                    finish = choice.finish_reason or finish
        except (httpx.HTTPError, openai.APIConnectionError):
            pass  # cut mid-way: the SDK raises httpx's error while iterating
        if finish is not None:
            return text
    raise RuntimeError(f"stream cut {tries} times")


def test_the_docs_recipe_for_the_openai_client_resumes() -> None:
    openai = pytest.importorskip("openai")
    app = create_app(FakeBackend(), model_name="m", max_context_tokens=10_000)
    request = {"model": "m", "prompt": "one two three four five", "max_tokens": 12}
    with ServerThread(app) as srv:
        client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        whole = client.completions.create(**request).choices[0].text
    with ServerThread(cutting(app, CUT_AFTER)) as srv:
        client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        assert complete_resuming(client, **request) == whole
