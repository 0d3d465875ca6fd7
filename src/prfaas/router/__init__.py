"""Live router: membership/heartbeats, global KV index, bandwidth monitor; adapts them to views."""

from prfaas.router.adapter import MembershipRecord, RouterAdapter, TransferTelemetry

__all__ = ["MembershipRecord", "RouterAdapter", "TransferTelemetry"]
