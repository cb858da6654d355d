"""The editing contracts: what the driver asks of any image editor (Qwen-Image-Edit replicas, the sandbox) and of
the editor pool.

* :class:`Editor` — edit a batch; every backend in ``easyr1.core.registries.EDITOR_BACKENDS`` satisfies it.
* :class:`DrainsMetrics` — per-step counters since the previous call (the pool; the HTTP judge's stats follow in
  phase B of issue 17).
* :class:`EditorService` — the editor pool as the driver holds it: an editor that drains metrics and closes.

The driver drains an editor's metrics when it satisfies :class:`DrainsMetrics` (the pool; an in-process editor keeps
no counters).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from easyr1.core.types import EditRequest, EditResult

__all__ = ["DrainsMetrics", "Editor", "EditorService"]


@runtime_checkable
class Editor(Protocol):
    def edit(self, requests: Sequence[EditRequest]) -> list[EditResult]:
        """Edit a batch; one result per request, in order."""
        ...


@runtime_checkable
class DrainsMetrics(Protocol):
    def drain_metrics(self) -> dict[str, float]:
        """Flat metric keys (``editor/*``) for what happened since the previous call; resets the per-step counts."""
        ...


@runtime_checkable
class EditorService(Editor, DrainsMetrics, Protocol):
    """The editor pool: edits, drains its per-step metrics, releases its replicas."""

    def close(self) -> None:
        """Stop every replica (idempotent)."""
        ...
