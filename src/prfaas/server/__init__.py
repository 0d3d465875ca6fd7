"""The OpenAI-compatible HTTP edge: create_app over a Backend, metrics and the live dashboard."""

from prfaas.server.app import create_app
from prfaas.server.backend import (
    Backend,
    BackendError,
    BackendUnavailable,
    ChatMessage,
    CompletionRequest,
    ContextLengthExceeded,
    FakeBackend,
    TokenChunk,
    Usage,
)
from prfaas.server.dashboard import DashboardSource, SampleDashboardSource
from prfaas.server.generation import Timeouts
from prfaas.server.metrics import ServerMetrics
from prfaas.server.runner import ServerThread

__all__ = [
    "Backend",
    "BackendError",
    "BackendUnavailable",
    "ChatMessage",
    "CompletionRequest",
    "ContextLengthExceeded",
    "DashboardSource",
    "FakeBackend",
    "SampleDashboardSource",
    "ServerMetrics",
    "ServerThread",
    "Timeouts",
    "TokenChunk",
    "Usage",
    "create_app",
]
