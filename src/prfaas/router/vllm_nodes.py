"""A vLLM fleet as the router sees it: the deployment file (`engine = "vllm"`) and policy views."""

from __future__ import annotations

import json
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prfaas.core.view import CacheMatch, ClusterState, ClusterView, LinkView, NodeView
from prfaas.errors import UsageError

DEAD_FOR_S = 5.0  # a node that failed a request is skipped this long, then tried again


@dataclass
class VllmNode:
    name: str
    cluster: str
    role: str  # "prefill" or "decode"
    url: str
    engine_id: str  # the connector's engine id (what kv_transfer_params name)
    inflight: int = 0
    dead_until: float = 0.0

    @property
    def alive(self) -> bool:
        return time.monotonic() >= self.dead_until

    def failed(self) -> None:
        self.dead_until = time.monotonic() + DEAD_FOR_S


@dataclass
class VllmFleet:
    model: str  # served model name / path of the checkpoint (its tokenizer.json is used)
    tokenizer: str
    policy: str
    params: dict[str, Any]
    block_tokens: int
    link_gbps: float
    clusters: dict[str, str]  # name -> "prfaas" | "pd"
    nodes: dict[str, VllmNode] = field(default_factory=dict)
    request_timeout_s: float = 300.0
    events_bind: str = ""  # ZMQ endpoint the router binds for KV events (topic kv@NODE); "" = off

    def view(self, matches: dict[str, int], exclude: frozenset[str] = frozenset()) -> ClusterView:
        """A frozen snapshot for the policy: live nodes, one prfaas->pd link per pair, matches."""
        states = []
        for cname, role in self.clusters.items():
            nodes = tuple(
                NodeView(n.name, n.role, n.inflight, 0, n.inflight,  # type: ignore[arg-type]
                         1 if n.role == "prefill" else 64, 0,
                         draining=not n.alive or n.name in exclude)
                for n in self.nodes.values() if n.cluster == cname
            )
            states.append(ClusterState(cname, role, nodes))  # type: ignore[arg-type]
        links = tuple(
            LinkView(a, b, self.link_gbps, 0.0, 0, 0.0, 0.0)
            for a, ra in self.clusters.items() for b, rb in self.clusters.items()
            if ra == "prfaas" and rb == "pd"
        )
        found = tuple(
            CacheMatch(self.nodes[n].cluster, blocks * self.block_tokens, n)
            for n, blocks in matches.items() if n in self.nodes
        )
        return ClusterView(time.monotonic(), tuple(states), links, found)


def _need(d: dict[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise UsageError(f"{where}: missing '{key}'")
    return d[key]


def _node_url(n: dict[str, Any], where: str) -> str:
    """An external instance's `url`, or where `prfaas up` starts it (`port`, `host`)."""
    if n.get("url"):
        return str(n["url"]).rstrip("/")
    if "port" not in n:
        raise UsageError(f"{where}: give 'url' (a running vLLM) or 'port' (started by prfaas up)")
    return f"http://{n.get('host', '127.0.0.1')}:{int(n['port'])}"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    return json.dumps(str(v))  # a TOML basic string (JSON escapes are valid TOML)


def fleet_toml(fleet: VllmFleet) -> str:
    """The fleet as a router deployment file (every node with its URL), for `vllm_serve`."""
    top = {"engine": "vllm", "model": fleet.model, "tokenizer": fleet.tokenizer,
           "policy": fleet.policy, "policy_params": fleet.params,
           "block_tokens": fleet.block_tokens, "link_gbps": fleet.link_gbps,
           "request_timeout_s": fleet.request_timeout_s, "events_bind": fleet.events_bind}
    out = [f"{k} = {_toml_value(v)}" for k, v in top.items()]
    for name, role in fleet.clusters.items():
        out.append(f"\n[[cluster]]\nname = {_toml_value(name)}\nrole = {_toml_value(role)}")
    for n in fleet.nodes.values():
        fields = {"name": n.name, "cluster": n.cluster, "role": n.role, "url": n.url,
                  "engine_id": n.engine_id}
        out.append("\n[[node]]\n" + "\n".join(f"{k} = {_toml_value(v)}" for k, v in fields.items()))
    return "\n".join(out) + "\n"


def load_fleet(path: Path) -> VllmFleet:
    """Parse a deployment file with `engine = "vllm"`; bad input raises UsageError."""
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    if raw.get("engine") != "vllm":
        raise UsageError(f"{path}: not a vLLM deployment (set engine = \"vllm\")")
    clusters = {str(_need(c, "name", "[[cluster]]")): str(c.get("role", "pd"))
                for c in raw.get("cluster", [])}
    if any(r not in ("prfaas", "pd") for r in clusters.values()):
        raise UsageError(f"{path}: a cluster role is 'prfaas' or 'pd'")
    model = str(_need(raw, "model", str(path)))
    fleet = VllmFleet(
        model=model,
        tokenizer=str(raw.get("tokenizer", Path(model) / "tokenizer.json")),
        policy=str(raw.get("policy", "prfaas")),
        params=dict(raw.get("policy_params", {})),
        block_tokens=int(raw.get("block_tokens", 256)),
        link_gbps=float(raw.get("link_gbps", 10.0)),
        clusters=clusters,
        request_timeout_s=float(raw.get("request_timeout_s", 300.0)),
        events_bind=str(raw.get("events_bind", "")),
    )
    for n in raw.get("node", []):
        where = f"[[node]] {n.get('name', '?')}"
        name = str(_need(n, "name", where))
        node = VllmNode(name, str(_need(n, "cluster", where)), str(_need(n, "role", where)),
                        _node_url(n, where), str(n.get("engine_id", name)))
        if node.cluster not in clusters or node.role not in ("prefill", "decode"):
            raise UsageError(f"{where}: unknown cluster or role (prefill|decode)")
        fleet.nodes[node.name] = node
    if not any(n.role == "decode" for n in fleet.nodes.values()):
        raise UsageError(f"{path}: no decode node")
    return fleet
