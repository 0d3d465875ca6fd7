"""`prfaas up` for `engine = "vllm"` files, without vLLM: command lines, secrets, external nodes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from tokenizers import Tokenizer, models, pre_tokenizers

from prfaas.deploy.vllm_nodes import VllmDeployment, is_vllm_file
from prfaas.errors import UsageError
from prfaas.router.vllm_nodes import fleet_toml, load_fleet
from prfaas.security.certs import issue_all
from prfaas.server import ServerThread

SRC = Path(__file__).resolve().parents[1] / "src"
NODES = (("prfaas-p0", "prfaas", "prefill"), ("pd-p0", "pd", "prefill"), ("pd-d0", "pd", "decode"))


def write(tmp_path: Path, node_lines: dict[str, str], head: str = "") -> Path:
    tok = Tokenizer(models.WordLevel({"<unk>": 0, "a": 1, "b": 2}, "<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    text = (f'engine = "vllm"\nmodel = "{tmp_path}"\npolicy = "prfaas-static"\n'
            f"block_tokens = 4\npolicy_params = {{ threshold_tokens = 20 }}\n{head}\n"
            '[[cluster]]\nname = "prfaas"\nrole = "prfaas"\n[[cluster]]\nname = "pd"\n'
            'role = "pd"\n')
    for name, cluster, role in NODES:
        text += (f'[[node]]\nname = "{name}"\ncluster = "{cluster}"\nrole = "{role}"\n'
                 f"{node_lines[name]}\n")
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    return path


def test_started_nodes_get_the_connector_tls_and_events_flags(tmp_path: Path) -> None:
    head = (f'vllm_python = "{sys.executable}"\nvllm_args = ["--enforce-eager"]\n'
            'events_bind = "tcp://127.0.0.1:18999"')
    path = write(tmp_path, {"prfaas-p0": "port = 18901", "pd-p0": "port = 18902",
                            "pd-d0": "port = 18903\nkv_port = 18933"}, head)
    assert is_vllm_file(path)
    dep = VllmDeployment(path, run_dir=tmp_path / "run")
    dep._resolve_ports()
    cmds = {n: dep.command(dep.fleet.nodes[n]) for n in dep.launch}
    secret = dep.secret_file.read_text()
    assert oct(dep.secret_file.stat().st_mode & 0o777) == "0o600"
    for name, cmd in cmds.items():
        assert secret not in " ".join(cmd)  # the connector reads the secret from its file
        assert cmd[-1] == "--enforce-eager" and "--no-disable-hybrid-kv-cache-manager" in cmd
        kvt = json.loads(cmd[cmd.index("--kv-transfer-config") + 1])
        extra = kvt["kv_connector_extra_config"]
        assert kvt["kv_connector"] == "PrfaasConnector" and extra["engine_id"] == name
        assert Path(extra["pki_dir"], f"{name}.pem").exists()  # the run's PKI, one cert each
        ev = json.loads(cmd[cmd.index("--kv-events-config") + 1])
        assert ev["endpoint"] == "tcp://127.0.0.1:18999" and ev["topic"] == f"kv@{name}"
    decode = json.loads(cmds["pd-d0"][cmds["pd-d0"].index("--kv-transfer-config") + 1])
    prefill = json.loads(cmds["pd-p0"][cmds["pd-p0"].index("--kv-transfer-config") + 1])
    assert decode["kv_connector_extra_config"]["listen"] == "127.0.0.1:18933"
    peers = prefill["kv_connector_extra_config"]["peers"]
    assert peers["pd-d0"] == "127.0.0.1:18933"  # and every other node: cache pulls go there
    assert set(peers) == {"pd-d0", "prfaas-p0"} and "pd-p0" not in peers
    # The router's file: every node with its URL, the rest unchanged.
    (tmp_path / "r.toml").write_text(fleet_toml(dep.fleet))
    again = load_fleet(tmp_path / "r.toml")
    assert again.nodes["pd-d0"].url == "http://127.0.0.1:18903"
    assert again.params == {"threshold_tokens": 20} and again.events_bind == dep.fleet.events_bind


def test_external_nodes_need_the_shared_secret_and_pki(tmp_path: Path) -> None:
    path = write(tmp_path, {n: 'url = "http://127.0.0.1:1"' for n, _, _ in NODES})
    with pytest.raises(UsageError, match="secret_file and pki_dir"):
        VllmDeployment(path)


def test_prfaas_up_reports_a_missing_vllm_env_in_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, {"prfaas-p0": "port = 1", "pd-p0": "port = 2", "pd-d0": "port = 3"},
                 'vllm_python = "/nonexistent/python"')
    env = dict(os.environ, PYTHONPATH=str(SRC))
    out = subprocess.run([sys.executable, "-m", "prfaas", "up", "--config", str(path)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "make vllm-env" in out.stderr.strip().splitlines()[-1]


def fake_vllm(seen: list[dict[str, Any]]) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        body = await request.json()
        seen.append(body)

        def sse() -> Any:
            chunk = {"choices": [{"text": "ok", "finish_reason": "length"}]}
            yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream")

    return app


def test_external_fleet_runs_only_the_router_and_stops_it(tmp_path: Path) -> None:
    issue_all(tmp_path / "pki", [n for n, _, _ in NODES])
    (tmp_path / "secret").write_text("0123456789abcdef0123456789abcdef")
    seen: list[dict[str, Any]] = []
    with ServerThread(fake_vllm(seen)) as srv:
        path = write(tmp_path, {n: f'url = "{srv.url}"' for n, _, _ in NODES},
                     f'secret_file = "{tmp_path}/secret"\npki_dir = "{tmp_path}/pki"')
        dep = VllmDeployment(path)
        try:
            url = dep.start(timeout_s=120)
            assert list(dep.procs) == ["router"]  # external instances are not started
            r = httpx.post(f"{url}/v1/completions", timeout=60,
                           json={"model": str(tmp_path), "prompt": "a b", "max_tokens": 1})
            assert r.status_code == 200, r.text
            assert [b["kv_transfer_params"]["do_remote_prefill"] for b in seen] == [False, True]
        finally:
            dep.stop()
        assert all(p.poll() is not None for p in dep.procs.values())
        assert not dep.run_dir.exists()
