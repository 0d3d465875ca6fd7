"""Start a local vLLM fleet (instances with the connector) for the demo and the vLLM tests."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

CONNECTOR = "prfaas.integrations.vllm.connector"


@dataclass(frozen=True, slots=True)
class Instance:
    name: str
    cluster: str
    role: str  # prefill | decode
    port: int
    kv_port: int  # decode: where pushed KV lands; prefill: unused

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def demo_instances(base: int = 18200) -> list[Instance]:
    """One PrfaaS prefill, one PD prefill, one PD decode (the demo's three instances)."""
    return [
        Instance("prfaas-p0", "prfaas", "prefill", base + 1, 0),
        Instance("pd-p0", "pd", "prefill", base + 2, 0),
        Instance("pd-d0", "pd", "decode", base + 3, base + 33),
    ]


@dataclass
class Fleet:
    vllm_python: str
    model: Path
    work: Path
    instances: list[Instance]
    events_port: int = 18250  # the router binds it; instances publish KV events to it
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def secret_file(self) -> Path:
        return self.work / "transfer.secret"

    def stats_path(self, name: str) -> Path:
        return self.work / f"kv-{name}.jsonl"

    def _extra(self, inst: Instance) -> dict[str, object]:
        decoders = [i for i in self.instances if i.role == "decode"]
        extra: dict[str, object] = {"engine_id": inst.name, "secret_file": str(self.secret_file),
                                    "stats_path": str(self.stats_path(inst.name)),
                                    "load_timeout_s": 20}
        if inst.role == "decode":
            extra["listen"] = f"127.0.0.1:{inst.kv_port}"
        else:
            extra["peers"] = {d.name: f"127.0.0.1:{d.kv_port}" for d in decoders}
        return extra

    def command(self, inst: Instance) -> list[str]:
        kvt = {"kv_connector": "PrfaasConnector", "kv_connector_module_path": CONNECTOR,
               "kv_role": "kv_both", "kv_load_failure_policy": "recompute",
               "kv_connector_extra_config": self._extra(inst)}
        events = {"enable_kv_cache_events": True, "publisher": "zmq",
                  "endpoint": f"tcp://127.0.0.1:{self.events_port}", "topic": f"kv@{inst.name}"}
        info = json.loads((self.model / "prfaas_tiny.json").read_text())
        return [self.vllm_python, "-m", "vllm.entrypoints.openai.api_server",
                "--model", str(self.model), "--dtype", str(info["dtype"]), "--enforce-eager",
                "--max-model-len", "4096", "--host", "127.0.0.1", "--port", str(inst.port),
                "--no-disable-hybrid-kv-cache-manager",
                "--kv-transfer-config", json.dumps(kvt), "--kv-events-config", json.dumps(events)]

    def start(self, inst: Instance) -> None:
        env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", VLLM_CPU_OMP_THREADS_BIND="nobind")
        src = str(Path(__file__).resolve().parents[3])
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
        log = open(self.work / f"{inst.name}.log", "wb")  # noqa: SIM115 (lives with the process)
        # Own process group: vLLM forks an engine core and a worker, which must die with it.
        self.procs[inst.name] = subprocess.Popen(self.command(inst), stdout=log,
                                                 stderr=subprocess.STDOUT, env=env,
                                                 start_new_session=True)

    def start_all(self, timeout_s: float = 600.0) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        if not self.secret_file.exists():
            self.secret_file.write_text(secrets.token_hex(32))
            self.secret_file.chmod(0o600)
        for inst in self.instances:
            self.start(inst)
        deadline = time.monotonic() + timeout_s
        for inst in self.instances:
            wait_ready(inst.url, self.procs[inst.name], deadline)

    def kill(self, name: str) -> None:
        """SIGKILL the instance and its engine processes (a crash, as the fallback test needs)."""
        proc = self.procs.get(name)
        if proc is not None:
            _signal_group(proc, signal.SIGKILL)
            proc.wait(timeout=30)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGTERM)
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill(name)
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGKILL)  # engine processes left behind by the parent

    def deployment_toml(self, policy: str = "prfaas-static", threshold: int = 300) -> str:
        lines = ['engine = "vllm"', f'model = "{self.model}"', f'policy = "{policy}"',
                 "block_tokens = 256", "link_gbps = 10.0",
                 f"policy_params = {{ threshold_tokens = {threshold} }}",
                 f'events_bind = "tcp://127.0.0.1:{self.events_port}"', "",
                 '[[cluster]]\nname = "prfaas"\nrole = "prfaas"\n',
                 '[[cluster]]\nname = "pd"\nrole = "pd"\n']
        for i in self.instances:
            lines.append(f'[[node]]\nname = "{i.name}"\ncluster = "{i.cluster}"\n'
                         f'role = "{i.role}"\nurl = "{i.url}"\nengine_id = "{i.name}"\n')
        return "\n".join(lines)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # the group this fleet created (start_new_session)


def wait_ready(url: str, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"vLLM at {url} exited with {proc.returncode} (see its log)")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise TimeoutError(f"vLLM at {url} not ready in time")


if __name__ == "__main__":
    sys.exit("use scripts/vllm_demo.sh or tests/vllm")
