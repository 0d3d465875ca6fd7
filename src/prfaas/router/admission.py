"""The router's side of admission control: limits from [limits], the waiting count, 429s."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prfaas.core.request import RequestSpec
from prfaas.core.view import ClusterView
from prfaas.deploy.config import DeploymentConfig
from prfaas.policy.admission import Admission, admit, shed_unplaced
from prfaas.policy.params import PolicyParams
from prfaas.policy.placement import Placement
from prfaas.server.backend import Overloaded

_WHY = {
    "queue": "too many requests are waiting for their first token",
    "node_queue": "the prefill queue is full",
    "queue_wait": "the prefill queues hold more work than this deployment admits",
}


class Admitter:
    """Applies policy.admission.admit to each new request; `waiting` counts admitted requests
    that have no first token yet (the global queue)."""

    def __init__(
        self, cfg: DeploymentConfig, time_scale: float, count: Callable[[str, str], None]
    ) -> None:
        lim = cfg.limits
        self.time_scale = time_scale  # the policy's seconds are modelled ones
        self.slo_s = lim.ttft_slo_s
        self.max_wait_s = lim.queue_wait_bound_s()
        self.limits = lim.admission_limits(time_scale)
        self.count = count
        self.waiting = 0

    def check(
        self, view: ClusterView, spec: RequestSpec, placement: Placement, params: PolicyParams
    ) -> None:
        """Return if admitted; raise Overloaded (HTTP 429, Retry-After) if shed."""
        verdict = admit(view, spec, placement, params, self.limits, self.waiting)
        if not verdict.admit:
            self._shed(verdict)

    def screen(self, view: ClusterView, params: PolicyParams) -> None:
        """Before the prompt is tokenized: raise Overloaded if no placement could be admitted
        (a 429 then costs no tokenizing, hashing or placing: policy.admission.shed_unplaced)."""
        verdict = shed_unplaced(view, params, self.limits, self.waiting)
        if verdict is not None:
            self._shed(verdict)

    def _shed(self, verdict: Admission) -> None:
        self.count("shed", verdict.reason)
        ttft = verdict.predicted_ttft_s / self.time_scale
        why = _WHY.get(
            verdict.reason,
            f"the predicted time to first token ({ttft:.1f} s) exceeds the {self.slo_s:g} s SLO",
        )
        raise Overloaded(why, verdict.retry_after_s / self.time_scale, verdict.reason)


def screen(backend: Any) -> None:
    """Before the edge reads a request's body: shed it (Overloaded) if the cluster state already
    refuses it (a RouterBackend; its view without cache matches: admission needs none)."""
    view = backend.fleet.view(time.monotonic(), [], {})
    backend.admission.screen(view, backend.params)
