"""Readers of a deployment file's tables ([engine], [policy], [router], [[clusters]], [[links]])."""

from __future__ import annotations

from typing import Any

from prfaas.deploy.config import (
    CLUSTER_ROLES,
    EMULATIONS,
    ENGINE_KINDS,
    GIB,
    NODE_ROLES,
    ClusterConfig,
    DeploymentConfig,
    EngineConfig,
    LinkConfig,
    NodeConfig,
    PolicyConfig,
    RouterConfig,
)
from prfaas.errors import ConfigError, InfeasibleError
from prfaas.planner.fields import Table


def choice(t: Table, key: str, choices: tuple[str, ...], default: str | None = None) -> str:
    value = t.string(key, default=default)
    if value not in choices:
        raise t.fail(key, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def engine_section(root: Table) -> EngineConfig:
    t = root.table("engine")
    assert t is not None
    kind = choice(t, "kind", ENGINE_KINDS)
    default_model = "qwen3.5-tiny" if kind == "transformers" else "kimi-linear-48b"
    wire = choice(t, "wire_dtype", ("float32", "bfloat16", "float16"), default="float32")
    cfg = EngineConfig(
        kind=kind,
        model=t.string("model", default=default_model),
        model_path=t.string("model_path") if t.has("model_path") else None,
        kv_profile=t.string("kv_profile") if t.has("kv_profile") else None,
        num_layers=t.integer("num_layers", default=8, minimum=1),
        payload_scale=t.number("payload_scale", default=1.0, strict_min=True),
        time_scale=t.number("time_scale", default=1.0, strict_min=True),
        threads=t.integer("threads", default=1, minimum=1),
        seed=t.integer("seed", default=0),
        max_context_tokens=t.integer("max_context_tokens", default=0),
        wire_dtype=wire,
        decode_chunk_tokens=t.integer("decode_chunk_tokens", default=1, minimum=1),
    )
    if kind == "transformers" and (cfg.payload_scale != 1.0 or cfg.time_scale != 1.0):
        key = "payload_scale" if cfg.payload_scale != 1.0 else "time_scale"
        raise t.fail(key, "applies only to the emulated engine (transformers runs real compute)")
    t.finish()
    return cfg


def policy_section(root: Table) -> PolicyConfig:
    t = root.table("policy", optional=True)
    if t is None:
        return PolicyConfig("prfaas")
    from prfaas.policy.registry import policy_names

    name = choice(t, "name", tuple(policy_names()), default="prfaas")
    params = t.table("params", optional=True)
    t.finish()
    return PolicyConfig(name, _policy_params(params) if params else {})


def _policy_params(t: Table) -> dict[str, Any]:
    """Keys of prfaas.policy.PolicyParams; arrays become tuples (threshold_by_gbps pairs)."""
    from dataclasses import fields

    from prfaas.policy.params import PolicyParams

    known = {f.name for f in fields(PolicyParams)}
    out: dict[str, Any] = {}
    for key in list(t.data):
        if key not in known:
            raise t.fail(key, f"is not a policy parameter (known: {', '.join(sorted(known))})")
        value = t.raw(key)
        out[key] = _freeze(value)
    try:
        PolicyParams(**out)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{t.source}: field '{t.path}' is invalid: {exc}") from None
    t.finish()
    return out


def _freeze(value: Any) -> Any:
    return tuple(_freeze(v) for v in value) if isinstance(value, list) else value


def router_section(root: Table) -> RouterConfig:
    t = root.table("router", optional=True)
    if t is None:
        return RouterConfig()
    host = t.string("host", default="127.0.0.1")
    control_host = t.string("control_host", default="127.0.0.1")
    cfg = RouterConfig(
        host=host,
        port=_port(t, "port"),
        control_host=control_host,
        control_port=_port(t, "control_port"),
        advertise=advertise(t, control_host),
        heartbeat_s=t.number("heartbeat_s", default=0.2, strict_min=True),
        dead_after_s=t.number("dead_after_s", default=2.0, strict_min=True),
        lease_s=t.integer("lease_s", default=3, minimum=2),
        rebalance_s=t.number("rebalance_s", default=0.0),
        rebalance_min_samples=t.integer("rebalance_min_samples", default=200, minimum=1),
        request_timeout_s=t.number("request_timeout_s", default=120.0, strict_min=True),
        replicas=t.integer("replicas", default=1, minimum=1),
    )
    if cfg.replicas > MAX_REPLICAS:
        raise t.fail("replicas", f"must be at most {MAX_REPLICAS}, got {cfg.replicas}")
    if cfg.replicas > 1 and cfg.control_port:
        raise t.fail("control_port", "cannot be fixed with replicas > 1 (each replica has one)")
    if cfg.dead_after_s <= cfg.heartbeat_s:
        raise t.fail("dead_after_s", f"must exceed heartbeat_s ({cfg.heartbeat_s:g})")
    t.finish()
    return cfg


MAX_REPLICAS = 16


def advertise(t: Table, bind: str) -> str:
    """The address others dial: `advertise`, else the bind address if it is a concrete one."""
    if t.has("advertise"):
        return t.string("advertise")
    if bind in ("0.0.0.0", "::", ""):
        raise t.fail("advertise", f"is required when binding {bind!r} (where do peers dial?)")
    return bind


def _port(t: Table, key: str) -> int:
    port = t.integer(key, default=0)
    if port > 65535:
        raise t.fail(key, f"must be a TCP port (0-65535), got {port}")
    return port


def _array(root: Table, key: str) -> list[Table]:
    value = root.raw(key)
    if not isinstance(value, list) or not value:
        raise root.fail(key, "must be a non-empty array of tables ([[...]])")
    return [Table(item, f"{root.name(key)}[{i}]", root.source) for i, item in enumerate(value)]


def clusters_section(root: Table, engine: EngineConfig) -> tuple[ClusterConfig, ...]:
    out: list[ClusterConfig] = []
    for t in _array(root, "clusters"):
        name = t.string("name")
        role = choice(t, "role", CLUSTER_ROLES)
        intra = t.number("intra_gbps", default=0.0)
        nodes = tuple(n for nt in _array(t, "nodes") for n in _nodes(nt, name, role, engine))
        t.finish()
        out.append(ClusterConfig(name, role, nodes, intra))
    return tuple(out)


def _nodes(t: Table, cluster: str, role: str, engine: EngineConfig) -> list[NodeConfig]:
    """One [[clusters.nodes]] entry; `count = N` makes N identical nodes NAME0..NAME{N-1}."""
    count = t.integer("count", default=1, minimum=1)
    node = _node(t, cluster, role, engine)
    if count == 1:
        return [node]
    if node.port or node.transfer_port:
        raise t.fail("count", "cannot be combined with fixed ports")
    from dataclasses import replace

    return [replace(node, name=f"{node.name}{i}") for i in range(count)]


def _node(t: Table, cluster: str, cluster_role: str, engine: EngineConfig) -> NodeConfig:
    from dataclasses import replace

    role = choice(t, "role", NODE_ROLES)
    if cluster_role == "prfaas" and role != "prefill":
        raise t.fail("role", "must be prefill: a PrfaaS cluster is prefill-only")
    hardware = t.string("hardware", default="cpu" if engine.kind == "transformers" else "H20")
    node = NodeConfig(
        name=t.string("name"),
        cluster=cluster,
        role=role,
        hardware=hardware,
        prefill_profile=t.string("prefill_profile") if t.has("prefill_profile") else None,
        decode_profile=t.string("decode_profile") if t.has("decode_profile") else None,
        max_batch=t.integer("max_batch", default=0),
        pool_bytes=int(t.number("pool_gib", default=1.0) * GIB),
        port=_port(t, "port"),
        transfer_port=_port(t, "transfer_port"),
        host=t.string("host", default="127.0.0.1"),
    )
    node = replace(node, advertise=advertise(t, node.host))
    if engine.kind == "emulated":
        from prfaas.deploy.hardware import check_node_profiles

        check_node_profiles(node, cluster_role, t)
    t.finish()
    return node


def links_section(root: Table, clusters: set[str]) -> tuple[LinkConfig, ...]:
    if not root.has("links") or root.data["links"] == []:
        root.used.add("links")
        return ()
    out: list[LinkConfig] = []
    for t in _array(root, "links"):
        link = LinkConfig(
            src=t.string("src"),
            dst=t.string("dst"),
            gbps=t.number("gbps", strict_min=True),
            rtt_ms=t.number("rtt_ms", default=0.0),
            loss=t.number("loss", default=0.0),
            emulation=choice(t, "emulation", EMULATIONS, default="shaper"),
            connections=t.integer("connections", default=4, minimum=1),
        )
        for key in ("src", "dst"):
            if getattr(link, key) not in clusters:
                raise t.fail(key, f"names no cluster (known: {', '.join(sorted(clusters))})")
        if link.src == link.dst:
            raise t.fail("dst", "must differ from src (intra-cluster links are intra_gbps)")
        if link.loss >= 1.0:
            raise t.fail("loss", f"must be a fraction below 1, got {link.loss!r}")
        t.finish()
        out.append(link)
    return tuple(out)


def check_topology(cfg: DeploymentConfig) -> None:
    src = cfg.source
    seen: set[str] = set()
    every_node = [n.name for c in cfg.clusters for n in c.nodes]  # cfg.nodes is by name
    for name in [c.name for c in cfg.clusters] + every_node:
        if name in seen or name == "router":
            raise ConfigError(f"{src}: name {name!r} is used twice (or is reserved)")
        seen.add(name)
    pd = [c for c in cfg.clusters if c.role == "pd"]
    if not pd:
        raise ConfigError(f"{src}: field 'clusters' needs a cluster with role = \"pd\" (decode)")
    if not any(n.role == "decode" for c in pd for n in c.nodes):
        raise InfeasibleError(f"{src}: no decode node: every request decodes in a PD cluster")
    for c in cfg.clusters:
        if c.role == "prfaas" and not any(cfg.link(c.name, p.name) for p in pd):
            raise ConfigError(
                f"{src}: field 'links' has no link from PrfaaS cluster {c.name!r} to a PD cluster"
            )
    ports = [p for n in cfg.nodes for p in (n.port, n.transfer_port) if p]
    ports += [cfg.router.port, cfg.router.control_port]
    fixed = [p for p in ports if p]
    if len(fixed) != len(set(fixed)):
        raise ConfigError(f"{src}: the same fixed port is given twice")
