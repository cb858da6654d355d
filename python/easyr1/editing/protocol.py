"""The editing contracts: what the driver asks of any image editor (Qwen-Image-Edit replicas, the sandbox) and of
the editor pool.

* :class:`Editor` — edit a batch; every backend in ``easyr1.core.registries.EDITOR_BACKENDS`` satisfies it.
* :class:`DrainsMetrics` — per-step counters since the previous call (the pool; the HTTP judge's stats follow in
  phase B of issue 17).
* :class:`EditorService` — the editor pool as the driver holds it: an editor that drains metrics and closes.
* :class:`StreamingEditor` / :class:`EditStream` — an editor that takes requests as they come and resolves one
  future per request as soon as it is edited (the pool); :func:`easyr1.editing.dispatch.open_edit_stream` gives an
  editor that only has ``edit`` the same interface.

The driver drains an editor's metrics when it satisfies :class:`DrainsMetrics` (the pool; an in-process editor keeps
no counters).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Protocol, runtime_checkable

from easyr1.core.types import EditRequest, EditResult

__all__ = ["DrainsMetrics", "EditStream", "Editor", "EditorService", "StreamingEditor"]


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


@runtime_checkable
class EditStream(Protocol):
    """Edits submitted over time; one future per request (its :class:`EditResult`; a failed edit is a result with a
    reason, an exception only when the editor itself broke, e.g. no replica left)."""

    @property
    def spans(self) -> list[tuple[str, float, float, int]]:
        """``("edit", start, end, items)`` per editor call so far (``time.perf_counter()`` times)."""
        ...

    def submit(self, requests: Sequence[EditRequest]) -> list[Future[EditResult]]:
        """Queue ``requests`` (returns at once); identical requests of one stream are edited once."""
        ...

    def close(self, *, cancel: bool = False) -> None:
        """Wait for every submitted request (``cancel``: drop those not started, cancelling their futures), then
        release the editor. Every wait is bounded by the editor's own deadlines."""
        ...


@runtime_checkable
class StreamingEditor(Editor, Protocol):
    """An editor that streams (the pool): same results per request as ``edit``, available as each is done."""

    def open_stream(self, on_span: Callable[[str, float, float, int], None] | None = None) -> EditStream:
        """Start a stream; the editor serves no other call until it is closed. ``on_span(stage, start, end, items)``
        (``time.perf_counter`` seconds) is called for each editor call as soon as it ends, from the thread that
        saw it end."""
        ...
