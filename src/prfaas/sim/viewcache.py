"""The simulated nodes' cached frozen view, re-indexed by their cluster after a change."""

from __future__ import annotations

from typing import Any

from prfaas.core.view import NodeView


class CachedViewNode:
    """Nodes cache their frozen NodeView; any state change must call touch()."""

    __slots__ = ("_view", "owner")

    def __init__(self) -> None:
        self._view: NodeView | None = None
        self.owner: Any = None  # the SimCluster, whose index this node's new view goes into

    def touch(self) -> None:
        """State changed: drop the cached view; the cluster re-indexes it before the next view."""
        if self._view is not None:
            self._view = None
            if self.owner is not None:
                self.owner.dirty.append(self)
