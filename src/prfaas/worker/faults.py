"""Fault hooks for tests and the chaos suite: crash or fail a transfer at chosen points."""

from __future__ import annotations

import logging
import os

import msgspec

from prfaas.worker.messages import FaultSpec

log = logging.getLogger(__name__)
CRASH_STATUS = 17


class FaultDisabled(Exception):
    """POST /fault on a worker started without --fault-hooks."""


class Faults:
    """Armed faults by kind; a point either fires (the process exits) or counts down."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._armed: dict[str, FaultSpec] = {}

    def arm(self, spec: FaultSpec) -> None:
        if not self.enabled:
            raise FaultDisabled("fault hooks are disabled on this worker")
        self._armed[spec.kind] = spec

    def take(self, kind: str) -> bool:
        """Consume one use of an armed non-crash fault (e.g. fail_transfer)."""
        spec = self._armed.get(kind)
        if spec is None:
            return False
        if spec.count <= 1:
            del self._armed[kind]
        else:
            self._armed[kind] = msgspec.structs.replace(spec, count=spec.count - 1)
        return True

    def point(self, kind: str) -> None:
        """A crash point: exit now if `kind` is armed (after `after_tokens` passes if set)."""
        spec = self._armed.get(kind)
        if spec is None:
            return
        if spec.after_tokens > 0:
            self._armed[kind] = msgspec.structs.replace(spec, after_tokens=spec.after_tokens - 1)
            return
        log.warning("fault hook %s: exiting now", kind)
        os._exit(CRASH_STATUS)  # a crash, as abrupt as it gets: no cleanup, kernel resets sockets
