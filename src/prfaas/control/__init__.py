"""The control loop shared by the simulator and the router: observations in, plan and moves out."""

from prfaas.control.loop import control_step, initial_plan
from prfaas.control.state import ControlConfig, ControlState, NodeLoad
from prfaas.control.window import LinkSample, ObservationWindow, PeriodObservation, PrefillSample

__all__ = [
    "ControlConfig",
    "ControlState",
    "LinkSample",
    "NodeLoad",
    "ObservationWindow",
    "PeriodObservation",
    "PrefillSample",
    "control_step",
    "initial_plan",
]
