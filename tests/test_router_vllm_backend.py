"""The router's vLLM backend against fake vLLM servers: the two hops, the policy split, fallback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.testclient import TestClient
from tokenizers import Tokenizer, models, pre_tokenizers

from prfaas.errors import UsageError
from prfaas.router.vllm_backend import VllmBackend
from prfaas.router.vllm_nodes import load_fleet
from prfaas.server import ServerThread, create_app

WORDS = [f"w{i}" for i in range(50)]


def fake_vllm(seen: list[dict[str, Any]]) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        body = await request.json()
        seen.append(body)
        if not body.get("stream"):
            return JSONResponse({"choices": [{"text": "x", "finish_reason": "length"}]})

        def sse() -> Any:
            for i in range(body["max_tokens"]):
                fin = "length" if i == body["max_tokens"] - 1 else None
                chunk = {"choices": [{"text": f"t{i}", "finish_reason": fin}]}
                yield f"data: {json.dumps(chunk)}\n\n"
            yield f"data: {json.dumps({'choices': [], 'usage': {'prompt_tokens': 1}})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream")

    return app


@pytest.fixture
def tokenizer_file(tmp_path: Path) -> Path:
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["<unk>", *WORDS])}, "<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    return path


def fleet_file(tmp_path: Path, tok: Path, urls: dict[str, str]) -> Path:
    nodes = [("prfaas-p0", "prfaas", "prefill"), ("pd-p0", "pd", "prefill"),
             ("pd-d0", "pd", "decode")]
    text = (f'engine = "vllm"\nmodel = "m"\ntokenizer = "{tok}"\npolicy = "prfaas-static"\n'
            "block_tokens = 4\npolicy_params = { threshold_tokens = 20 }\n"
            '[[cluster]]\nname = "prfaas"\nrole = "prfaas"\n'
            '[[cluster]]\nname = "pd"\nrole = "pd"\n')
    for name, cluster, role in nodes:
        text += (f'[[node]]\nname = "{name}"\ncluster = "{cluster}"\nrole = "{role}"\n'
                 f'url = "{urls[name]}"\nengine_id = "{name}-engine"\n')
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    return path


def serve(backend: VllmBackend, prompt: str) -> dict[str, Any]:
    app = create_app(backend, model_name="m", max_context_tokens=4096)
    with ServerThread(app) as srv:
        r = httpx.post(f"{srv.url}/v1/completions", timeout=30,
                       json={"model": "m", "prompt": prompt, "max_tokens": 3})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_two_hops_follow_the_connector_contract_and_the_policy(tmp_path, tokenizer_file):
    seen: dict[str, list[dict[str, Any]]] = {"prfaas-p0": [], "pd-p0": [], "pd-d0": []}
    servers = {n: ServerThread(fake_vllm(seen[n])).start() for n in seen}
    try:
        urls = {n: s.url for n, s in servers.items()}
        backend = VllmBackend(load_fleet(fleet_file(tmp_path, tokenizer_file, urls)))
        long_prompt, short_prompt = " ".join(WORDS[:30]), " ".join(WORDS[:5])
        assert serve(backend, long_prompt)["choices"][0]["text"] == "t0t1t2"
        pre, dec = seen["prfaas-p0"][-1], seen["pd-d0"][-1]
        assert pre["max_tokens"] == 1 and pre["prompt"] == list(range(1, 31))
        tid = pre["kv_transfer_params"]["transfer_id"]
        assert pre["kv_transfer_params"] == {"do_remote_decode": True, "do_remote_prefill": False,
                                             "transfer_id": tid, "remote_engine_id": "pd-d0-engine"}
        assert dec["kv_transfer_params"] == {"do_remote_decode": False, "do_remote_prefill": True,
                                             "transfer_id": tid,
                                             "remote_engine_id": "prfaas-p0-engine"}
        serve(backend, short_prompt)
        assert len(seen["pd-p0"]) == 1 and len(seen["prfaas-p0"]) == 1  # short stays local
        assert [d["offloaded"] for d in backend.log] == [True, False]
    finally:
        for s in servers.values():
            s.stop()


def test_a_dead_prfaas_instance_falls_back_to_local_prefill(tmp_path, tokenizer_file):
    seen: dict[str, list[dict[str, Any]]] = {"pd-p0": [], "pd-d0": []}
    servers = {n: ServerThread(fake_vllm(seen[n])).start() for n in seen}
    try:
        urls = {n: s.url for n, s in servers.items()} | {"prfaas-p0": "http://127.0.0.1:9"}
        backend = VllmBackend(load_fleet(fleet_file(tmp_path, tokenizer_file, urls)))
        out = serve(backend, " ".join(WORDS[:30]))
        assert out["choices"][0]["text"] == "t0t1t2"
        entry = backend.log[-1]
        assert [a["prefill"] for a in entry["attempts"]] == ["prfaas-p0", "pd-p0"]
        assert seen["pd-d0"][-1]["kv_transfer_params"]["remote_engine_id"] == "pd-p0-engine"
    finally:
        for s in servers.values():
            s.stop()


def test_bad_fleet_files_are_usage_errors(tmp_path):
    bad = tmp_path / "f.toml"
    bad.write_text('engine = "transformers"\n')
    with pytest.raises(UsageError, match="not a vLLM deployment"):
        load_fleet(bad)
    bad.write_text('engine = "vllm"\nmodel = "m"\n[[cluster]]\nname = "pd"\n'
                   '[[node]]\nname = "a"\ncluster = "nope"\nrole = "decode"\nurl = "u"\n'
                   'engine_id = "e"\n')
    with pytest.raises(UsageError, match="unknown cluster"):
        load_fleet(bad)


def test_a_policy_cache_pull_brings_the_prefix_to_the_prefill_node(tmp_path, tokenizer_file):
    seen: dict[str, list[dict[str, Any]]] = {"prfaas-p0": [], "pd-p0": [], "pd-d0": []}
    servers = {n: ServerThread(fake_vllm(seen[n])).start() for n in seen}
    try:
        urls = {n: s.url for n, s in servers.items()}
        path = fleet_file(tmp_path, tokenizer_file, urls)
        path.write_text(path.read_text().replace('"prfaas-static"', '"prfaas"').replace(
            "threshold_tokens = 20", "threshold_tokens = 20, min_pull_tokens = 8"))
        backend = VllmBackend(load_fleet(path))
        # The index says prfaas-p0 holds the first 7 blocks (28 tokens): the 2-token increment
        # stays local (pd-p0), and the policy pulls the prefix there first.
        backend.index.match = lambda hashes: {"prfaas-p0": 7}  # type: ignore[method-assign]
        assert serve(backend, " ".join(WORDS[:30]))["choices"][0]["text"] == "t0t1t2"
        entry = backend.log[-1]
        assert entry["prefill"] == "pd-p0" and entry["pull"]["ok"] is True
        assert entry["pull"] | {"transfer_id": ""} == {"src": "prfaas-p0", "dst": "pd-p0",
                                                       "tokens": 28, "transfer_id": "",
                                                       "ok": True}
        src, (dst_pull, dst_prefill) = seen["prfaas-p0"][-1], seen["pd-p0"]
        pid = src["kv_transfer_params"]["transfer_id"]
        # Whole blocks plus one token (the connector drops it on the source; see vllm_pull.py).
        assert src["prompt"] == dst_pull["prompt"] == list(range(1, 30))
        assert src["kv_transfer_params"]["do_remote_decode"] is True
        assert src["kv_transfer_params"]["remote_engine_id"] == "pd-p0-engine"
        assert dst_pull["kv_transfer_params"] == {"do_remote_decode": False,
                                                  "do_remote_prefill": True, "transfer_id": pid,
                                                  "remote_engine_id": "prfaas-p0-engine"}
        assert dst_prefill["prompt"] == list(range(1, 31))  # then the real prefill, whole
        assert dst_prefill["kv_transfer_params"]["remote_engine_id"] == "pd-d0-engine"
    finally:
        for s in servers.values():
            s.stop()


def test_the_token_id_extension_is_refused_with_a_clear_400(tmp_path, tokenizer_file):
    """The vLLM path relays text and cannot continue a seeded sample: it takes no part."""
    urls = {n: "http://127.0.0.1:9" for n in ("prfaas-p0", "pd-p0", "pd-d0")}
    backend = VllmBackend(load_fleet(fleet_file(tmp_path, tokenizer_file, urls)))
    client = TestClient(create_app(backend, model_name="m", max_context_tokens=4096))
    for field, value in (("return_token_ids", True), ("resume_token_ids", [1, 2])):
        r = client.post("/v1/completions", json={"model": "m", "prompt": "a b", field: value})
        assert r.status_code == 400 and r.json()["error"]["param"] == field
        assert r.json()["error"]["code"] == "unsupported_parameter"
