"""Deployment files, the process supervisor behind `prfaas up`, and an in-test handle."""

from prfaas.deploy.config import (
    ClusterConfig,
    DeploymentConfig,
    EngineConfig,
    LinkConfig,
    NodeConfig,
    PolicyConfig,
    RouterConfig,
    load_deployment,
    parse_deployment,
)

__all__ = [
    "ClusterConfig",
    "DeploymentConfig",
    "EngineConfig",
    "LinkConfig",
    "NodeConfig",
    "PolicyConfig",
    "RouterConfig",
    "load_deployment",
    "parse_deployment",
]
