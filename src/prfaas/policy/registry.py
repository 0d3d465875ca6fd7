"""Policies by name: homogeneous | naive | prfaas-static | prfaas."""

from __future__ import annotations

from collections.abc import Callable

from prfaas.core.request import RequestSpec
from prfaas.core.view import ClusterView
from prfaas.errors import UsageError
from prfaas.policy.params import PolicyParams
from prfaas.policy.placement import Placement
from prfaas.policy.routing import route_homogeneous, route_naive, route_prfaas, route_prfaas_static

RouteFn = Callable[[ClusterView, RequestSpec, PolicyParams], Placement]

POLICIES: dict[str, RouteFn] = {
    "homogeneous": route_homogeneous,
    "naive": route_naive,
    "prfaas-static": route_prfaas_static,
    "prfaas": route_prfaas,
}

# Which planner deployment each policy runs on (planner.optimise(...).deployments[key]).
DEPLOYMENT_OF: dict[str, str] = {
    "homogeneous": "homogeneous",
    "naive": "naive",
    "prfaas-static": "prfaas",
    "prfaas": "prfaas",
}


def policy_names() -> list[str]:
    return list(POLICIES)


def get_policy(name: str) -> RouteFn:
    """The route function registered as `name`; UsageError listing the valid names otherwise."""
    try:
        return POLICIES[name]
    except KeyError:
        raise UsageError(f"unknown policy {name!r}; choose one of: {', '.join(POLICIES)}") from None


def route(
    view: ClusterView, request: RequestSpec, params: PolicyParams, policy: str = "prfaas"
) -> Placement:
    """Route one request with the named policy."""
    return get_policy(policy)(view, request, params)
