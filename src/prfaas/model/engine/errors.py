"""Typed engine errors: bad requests, bad sampling parameters and rejected serialised caches."""

from __future__ import annotations

from prfaas.errors import ConfigError, UsageError


class EngineInputError(UsageError):
    """A request the engine cannot run: empty prompt, over the context limit, bad token ids."""


class SamplingError(UsageError):
    """A sampling parameter is negative, non-finite or absurd (e.g. temperature 1e6)."""


class StateMismatchError(UsageError):
    """A cached prefix does not fit the request (its length, or a linear state's length)."""


class WireFormatError(UsageError):
    """A serialised cache is corrupted, truncated, of another version or of another model."""


class UnsupportedModelError(ConfigError):
    """A checkpoint or config whose architecture or cache layout the engine cannot serve."""
