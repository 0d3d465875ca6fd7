"""Stdlib-only building blocks shared by every capability: lifecycle, views, clock, metrics."""

from prfaas.core.clock import Clock, ManualClock
from prfaas.core.lifecycle import TRANSITIONS, IllegalTransition, Phase, RequestRecord
from prfaas.core.metrics import RunSeries, SloSpec, distribution, percentile, summarise
from prfaas.core.request import RequestSpec
from prfaas.core.view import (
    CacheMatch,
    ClusterRole,
    ClusterState,
    ClusterView,
    LinkView,
    NodeRole,
    NodeView,
)

__all__ = [
    "TRANSITIONS",
    "CacheMatch",
    "Clock",
    "ClusterRole",
    "ClusterState",
    "ClusterView",
    "IllegalTransition",
    "LinkView",
    "ManualClock",
    "NodeRole",
    "NodeView",
    "Phase",
    "RequestRecord",
    "RequestSpec",
    "RunSeries",
    "SloSpec",
    "distribution",
    "percentile",
    "summarise",
]
