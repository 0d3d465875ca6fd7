"""Admission control in the simulator: the router's shedding (policy.admission.admit), mirrored."""

from __future__ import annotations

from prfaas.core.request import RequestSpec
from prfaas.core.view import ClusterView
from prfaas.policy.admission import AdmissionLimits, admit
from prfaas.policy.params import PolicyParams
from prfaas.policy.placement import Placement

SHED_PREFIX = "shed: "  # a shed request's reason starts with this


class SimAdmission:
    """Sheds a placed request as the live router would (429, not retried here); `waiting` counts
    admitted requests without a first token, as the router's global queue does."""

    __slots__ = ("limits", "shed", "waiting")

    def __init__(self, limits: AdmissionLimits) -> None:
        self.limits = limits
        self.waiting = 0
        self.shed = 0

    def check(
        self, view: ClusterView, spec: RequestSpec, placement: Placement, params: PolicyParams
    ) -> str:
        """'' if admitted (then counted as waiting), else the reason it was shed."""
        verdict = admit(view, spec, placement, params, self.limits, self.waiting)
        if not verdict.admit:
            self.shed += 1
            return SHED_PREFIX + verdict.reason
        self.waiting += 1
        return ""

    def first_token(self) -> None:
        self.waiting -= 1
