"""Deployment files (TOML) -> frozen dataclasses, validated strictly: every error names its field.

Format (examples/local.toml is the annotated reference):

    [deployment]  name, block_tokens, secret (optional), nodes_per_process (default 1)
    [engine]      kind = "transformers" | "emulated", model, ... (EngineConfig)
    [policy]      name, [policy.params] (passed to the policy as-is)
    [router]      host, port (the public OpenAI listener; 0 = pick a free one), control_host,
                  control_port, advertise (the cluster's control listener), heartbeat_s,
                  replicas, ...
    [security]    insecure, pki, kv_tls, public_metrics, public_dashboard, [[security.api_keys]]
    [limits]      max_body_bytes, max_prompt_tokens, max_tokens, max_concurrent_per_key,
                  ttft_slo_s, max_queue_wait_s, max_queue_per_node, max_queue, tokens_per_s_per_key
    [[clusters]]  name, role = "prfaas" | "pd", intra_gbps, [[clusters.nodes]] (NodeConfig)
    [[links]]     src, dst, gbps, rtt_ms, loss, emulation = "shaper" | "netns" | "veth", connections
    [datacenters] host, routers, etcd, wan, prefix_len: one namespace per process (datacenters.py)
    [control]     workload prior and knobs of the control loop (deploy/control_section.py)
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from prfaas.deploy.control_section import ControlSettings, control_section
from prfaas.errors import ConfigError
from prfaas.planner.fields import Table
from prfaas.policy.admission import AdmissionLimits, recovery_wait_bound

if TYPE_CHECKING:
    from prfaas.deploy.datacenters import DatacentersConfig

EngineKind = Literal["transformers", "emulated"]
Emulation = Literal["shaper", "netns", "veth"]
ENGINE_KINDS = ("transformers", "emulated")
CLUSTER_ROLES = ("prfaas", "pd")
NODE_ROLES = ("prefill", "decode")
EMULATIONS = ("shaper", "netns", "veth")
GIB = 2**30


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """One instance: a worker process with its engine, prefix-cache pool and transfer endpoint."""

    name: str
    cluster: str
    role: str  # initial role: prefill | decode (PD nodes may switch at run time)
    hardware: str  # a profiles.hardware preset, or "cpu" for the transformers engine
    prefill_profile: str | None  # emulated engine: a profiles prefill-profile name
    decode_profile: str | None  # emulated engine: a decode-profile name
    max_batch: int  # decode batch slots (BS_max); 0 = from the decode profile
    pool_bytes: int  # hybrid prefix-cache pool capacity (modelled bytes for the emulated engine)
    port: int  # control HTTP port, 0 = pick a free one
    transfer_port: int  # KV transfer port, 0 = pick a free one
    host: str = "127.0.0.1"  # bind address of the control and transfer listeners
    advertise: str = "127.0.0.1"  # where the others reach it (the router never asks the node)


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    name: str
    role: str  # prfaas | pd
    nodes: tuple[NodeConfig, ...]
    intra_gbps: float  # the fast intra-cluster link; 0 = unshaped loopback


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """One inter-cluster link (both directions) of the emulated WAN."""

    src: str
    dst: str
    gbps: float  # modelled capacity; the emulated engine scales it, see EngineConfig
    rtt_ms: float
    loss: float  # fraction of packets; only the netns emulation can apply it
    emulation: str  # shaper (in-process token bucket + delay) | netns (veth + tc, root)
    connections: int  # parallel TCP connections per transfer


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """How workers compute.

    emulated: no model math. Service times come from each node's hardware profile and are divided
    by `time_scale`; payloads are the modelled KV/state bytes times `payload_scale`; so that
    transfer time keeps its ratio to compute time, links are shaped at
    gbps x payload_scale x time_scale and RTTs divided by time_scale.
    """

    kind: str
    model: str  # transformers: an engine preset; emulated: a model preset (for S_kv) or label
    model_path: str | None = None  # transformers: a local checkpoint folder
    kv_profile: str | None = None  # emulated: profiles.get_kv_profile name (default: model)
    num_layers: int = 8  # emulated: layers streamed one by one
    payload_scale: float = 1.0
    time_scale: float = 1.0
    threads: int = 1
    seed: int = 0
    max_context_tokens: int = 0  # 0 = the engine's own limit
    wire_dtype: str = "float32"  # transformers: KV wire dtype (float32 | bfloat16 | float16)
    decode_chunk_tokens: int = 1  # emulated: tokens per decode stream line (same timing)

    @property
    def link_scale(self) -> float:
        """Factor from a modelled link rate (Gbit/s) to the shaped emulated one."""
        return self.payload_scale * self.time_scale if self.kind == "emulated" else 1.0


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RouterConfig:
    host: str = "127.0.0.1"  # the public listener (OpenAI API)
    port: int = 0
    control_host: str = "127.0.0.1"  # the control listener (/internal/*, mutual TLS)
    control_port: int = 0
    advertise: str = "127.0.0.1"  # where workers reach the control listener
    heartbeat_s: float = 0.2
    dead_after_s: float = 2.0
    lease_s: int = 3  # etcd lease TTL of nodes and routers: a silent process is gone after it
    rebalance_s: float = 0.0  # long-timescale rebalancer period; 0 = off
    rebalance_min_samples: int = 200  # served requests in the window before it may act
    request_timeout_s: float = 120.0
    replicas: int = 1  # router processes; > 1: HAProxy in front of them when installed


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str  # the client this key identifies
    key: str


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    insecure: bool = False  # plain HTTP and no identities on the control network (warned)
    pki: str | None = None  # a `prfaas certs` folder; None = a throwaway CA per `prfaas up`
    kv_tls: str = "cross"  # KV over TLS: off | cross (cross-cluster transfers) | all
    public_metrics: bool = True  # /metrics on the public listener
    public_dashboard: bool = True  # /dashboard on the public listener
    api_keys: tuple[ApiKey, ...] = ()


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    max_body_bytes: int = 4 << 20  # request body on the public listener
    max_prompt_tokens: int = 0  # 0 = the context window
    max_tokens: int = 4096  # cap on a request's max_tokens
    max_concurrent_per_key: int = 64  # in-flight requests per API key (or per anonymous client)
    max_connections: int = 2048  # per listener; beyond it uvicorn answers 503
    # Admission control (policy/admission.py): beyond these a request gets 429 + Retry-After.
    ttft_slo_s: float = 10.0  # predicted TTFT (wall-clock s) above this is shed; 0 = off
    # predicted queue wait (wall-clock s) above this is shed; 0 = recovery_s x (1 - recovery_load)
    max_queue_wait_s: float = 0.0
    # a burst's admitted backlog clears within recovery_s (wall-clock s; 0 = no bound) of its end
    # while a steady load of up to recovery_load (of capacity) goes on: the default bound is 4 s
    recovery_s: float = 10.0
    recovery_load: float = 0.6
    max_queue_per_node: int = 64  # requests waiting on one prefill node; 0 = unbounded
    max_queue: int = 1024  # requests waiting for their first token, router-wide; 0 = unbounded
    tokens_per_s_per_key: float = 0.0  # prompt bytes + max_tokens per second per key; 0 = off

    def queue_wait_bound_s(self) -> float:
        """The predicted queue wait (wall-clock s) above which a request is shed; 0 = none."""
        return self.max_queue_wait_s or recovery_wait_bound(self.recovery_s, self.recovery_load)

    def admission_limits(self, time_scale: float) -> AdmissionLimits:
        """The admission bounds in the policy's modelled seconds (wall-clock x time_scale)."""
        return AdmissionLimits(
            self.ttft_slo_s * time_scale,
            self.max_queue_per_node,
            self.max_queue,
            self.queue_wait_bound_s() * time_scale,
        )


@dataclass(frozen=True, slots=True)
class DeploymentConfig:
    name: str
    source: str
    block_tokens: int
    engine: EngineConfig
    policy: PolicyConfig
    router: RouterConfig
    clusters: tuple[ClusterConfig, ...]
    links: tuple[LinkConfig, ...]
    secret: str | None = None
    variants: Mapping[str, DeploymentConfig] = field(default_factory=dict)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    control: ControlSettings = field(default_factory=ControlSettings)
    datacenters: DatacentersConfig | None = None  # every process in its own namespace
    nodes_per_process: int = 1  # `prfaas up` runs this many worker nodes in one process
    # Nodes by name, built once: routers and workers look nodes up per request, in fleets of
    # thousands (a scan per lookup made registering N nodes O(N^2)).
    _by_name: Mapping[str, NodeConfig] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = {n.name: n for c in self.clusters for n in c.nodes}
        object.__setattr__(self, "_by_name", by_name)

    @property
    def nodes(self) -> tuple[NodeConfig, ...]:
        return tuple(self._by_name.values())

    def node(self, name: str) -> NodeConfig:
        found = self._by_name.get(name)
        if found is None:
            raise ConfigError(f"{self.source}: no node named {name!r}")
        return found

    def cluster(self, name: str) -> ClusterConfig:
        for c in self.clusters:
            if c.name == name:
                return c
        raise ConfigError(f"{self.source}: no cluster named {name!r}")

    def cluster_of(self, node_name: str) -> ClusterConfig:
        return self.cluster(self.node(node_name).cluster)

    def link(self, a: str, b: str) -> LinkConfig | None:
        """The link between clusters a and b (either direction), if any."""
        for link in self.links:
            if {link.src, link.dst} == {a, b}:
                return link
        return None

    def with_policy(self, name: str) -> DeploymentConfig:
        """This deployment as run under policy `name`: its [variant.NAME] if the file has one
        (e.g. the homogeneous baseline's own hardware), else the same nodes."""
        from dataclasses import replace

        if name in self.variants:
            return self.variants[name]
        # Parameters carry over: every policy reads the knobs it uses and ignores the rest.
        return replace(self, policy=PolicyConfig(name, self.policy.params), variants={})


def load_deployment(path: str | Path) -> DeploymentConfig:
    """Read and validate a deployment file."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"deployment file {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"deployment file {p}: cannot read it ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"deployment file {p}: not valid TOML ({exc})") from None
    return parse_deployment(data, source=str(p))


def parse_deployment(data: Mapping[str, Any], source: str = "<deployment>") -> DeploymentConfig:
    """Validate a parsed file; each [variant.POLICY] table replaces top-level tables (clusters,
    links, policy, ...) when the deployment runs under that policy, and is validated too."""
    base = {k: v for k, v in data.items() if k != "variant"}
    raw_variants = data.get("variant", {})
    if not isinstance(raw_variants, dict):
        raise ConfigError(f"{source}: field 'variant' must be a table of [variant.POLICY] tables")
    cfg = _parse_one(base, source)
    variants: dict[str, DeploymentConfig] = {}
    from prfaas.policy.registry import policy_names

    for name, doc in raw_variants.items():
        if name not in policy_names():
            raise ConfigError(
                f"{source}: field 'variant.{name}' names no policy "
                f"(choose from {', '.join(policy_names())})"
            )
        if not isinstance(doc, dict):
            raise ConfigError(f"{source}: field 'variant.{name}' must be a table")
        merged = {**base, **doc}
        merged.setdefault("policy", {})
        merged["policy"] = {**merged["policy"], "name": name}
        variants[name] = _parse_one(merged, f"{source} [variant.{name}]")
    from dataclasses import replace

    return replace(cfg, variants=variants)


def _parse_one(data: Mapping[str, Any], source: str) -> DeploymentConfig:
    from prfaas.deploy import sections as sec

    root = Table(dict(data), "", source)
    dep = root.table("deployment")
    assert dep is not None
    name = dep.string("name", default="deployment")
    block_tokens = dep.integer("block_tokens", default=64, minimum=1)
    secret = dep.string("secret") if dep.has("secret") else None
    per_process = dep.integer("nodes_per_process", default=1, minimum=1)
    dep.finish()
    engine = sec.engine_section(root)
    policy = sec.policy_section(root)
    router = sec.router_section(root)
    clusters = sec.clusters_section(root, engine)
    links = sec.links_section(root, {c.name for c in clusters})
    from prfaas.deploy.security_sections import limits_section, security_section

    security, limits = security_section(root), limits_section(root)
    control = control_section(root)
    from prfaas.deploy.datacenters import check_datacenters, datacenters_section

    datacenters = datacenters_section(root)
    root.finish()
    cfg = DeploymentConfig(
        name, source, block_tokens, engine, policy, router, clusters, links, secret,
        security=security, limits=limits, control=control, datacenters=datacenters,
        nodes_per_process=per_process,
    )
    sec.check_topology(cfg)
    check_datacenters(cfg, datacenters)
    return cfg
