"""Pure routing and rebalancing decisions over frozen cluster views (no I/O, no clock, no torch).

`route(view, request, params, policy)` with policy one of homogeneous | naive | prfaas-static |
prfaas; the long timescale lives in prfaas.policy.rebalance (it imports the planner lazily so
routing stays light).
"""

from prfaas.policy.params import PolicyParams
from prfaas.policy.placement import CachePull, Placement
from prfaas.policy.registry import DEPLOYMENT_OF, POLICIES, get_policy, policy_names, route

__all__ = [
    "DEPLOYMENT_OF",
    "POLICIES",
    "CachePull",
    "Placement",
    "PolicyParams",
    "get_policy",
    "policy_names",
    "route",
]
