"""Workloads: length distributions, Mooncake-format traces and arrival processes."""

from prfaas.workload.arrivals import (
    gamma_arrivals,
    onoff_arrivals,
    poisson_arrivals,
    uniform_arrivals,
)
from prfaas.workload.lengths import EmpiricalLengths, LengthDistribution, TruncatedLogNormal
from prfaas.workload.trace import TraceData, TraceFormatError, TraceRequest, read_trace

__all__ = [
    "EmpiricalLengths",
    "LengthDistribution",
    "TraceData",
    "TraceFormatError",
    "TraceRequest",
    "TruncatedLogNormal",
    "gamma_arrivals",
    "onoff_arrivals",
    "poisson_arrivals",
    "read_trace",
    "uniform_arrivals",
]
