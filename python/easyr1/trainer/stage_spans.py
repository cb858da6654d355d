"""Stage spans of each step: which stage ran when (absolute wall-clock times), and what that says about the pools.

Every stage the driver runs or waits on is recorded as a :class:`Span` (``time.time()`` seconds, so spans of
different threads and of the scorer's own records share one clock). At the end of a step,
:meth:`StageSpans.close_step` turns the spans of the step's wall-clock window into the step row's ``pipeline/*``
metrics and appends one JSON line to ``<run_dir>/stage_spans.jsonl`` (the timeline diagram of docs/training.md is
drawn from that file):

* ``pipeline/busy/<pool>`` — the union of the pool's spans within the window / the window (``rollout``, ``editor``,
  ``judge``, ``actor``; the weight sync keeps both the actor and the rollout pool busy);
* ``pipeline/overlap_s`` — Σ over stages of the length of the stage's union − the length of the union of every
  span: seconds saved by *different* stages running at once (concurrent calls of one stage — judge calls, editor
  replicas — are not overlap, they are that stage's own parallelism);
* ``pipeline/critical_path_s`` — the time covered by the chain of spans that ends the step, followed backwards
  (each link: the span that ended last before the current one started, or, when none had, the earliest-started one
  still running); the stages on it are named in the JSON line
  (``critical_path``), with ``critical_stage`` the one that holds the most of it.

A span is written with the first step whose window ends after it was added, and the metrics clip every span to the
window. ``off_policy_1`` scores batch t+1 in the background across the end of step t: the scorer reports each edit
call and judge call as it ends (``on_span``, from the thread that ended it; :meth:`StageSpans.add` is thread-safe),
so a call of batch t+1 that ended during step t is in step t's record (``for_step`` t+1) and counts for step t's busy
shares. A call still running when a step closes is not known yet: it is written with the next step's record
(starting before its window) and counts only for its part in that window — at most one call per editor replica and
judge slot per step boundary.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

POOLS: tuple[str, ...] = ("rollout", "editor", "judge", "actor")
"""The pools whose busy share each step row carries (``pipeline/busy/<pool>``)."""

STAGE_POOLS: dict[str, tuple[str, ...]] = {
    "rollout": ("rollout",),
    "old_logprob": ("actor",),
    "ref_logprob": ("actor",),
    "update": ("actor",),
    "sync": ("actor", "rollout"),
    "edit": ("editor",),
    "judge": ("judge",),
}
"""Which pools a stage keeps busy; a stage not listed (``reward``: parse/format/combine on the driver) keeps none."""

_PERF_OFFSET = time.time() - time.perf_counter()


def perf_to_wall(t: float) -> float:
    """A ``time.perf_counter()`` value on the ``time.time()`` clock of the spans."""
    return t + _PERF_OFFSET


@dataclass
class Span:
    stage: str
    start: float
    """``time.time()`` seconds."""
    end: float
    for_step: int
    """The step whose batch the stage worked on (the next step's for an off-policy prefetch)."""
    items: int | None = None
    """Responses, images or calls the stage handled, when known."""


class StageSpans:
    """A thread-safe list of the current step's spans (:meth:`add` may be called from any thread, e.g. a scorer's
    worker as each call ends); :meth:`close_step` hands them over once per step."""

    def __init__(self, path: Path | None):
        self.path = path
        self._spans: list[Span] = []
        self._lock = threading.Lock()

    def add(self, stage: str, start: float, end: float, for_step: int, items: int | None = None) -> None:
        if start > 1e9 or end <= 0:  # wall clock
            span = Span(stage, start, end, for_step, items)
        else:  # a time.perf_counter() value: moved onto the wall clock
            span = Span(stage, start + _PERF_OFFSET, end + _PERF_OFFSET, for_step, items)
        with self._lock:
            self._spans.append(span)

    @contextmanager
    def span(self, stage: str, for_step: int, items: int | None = None) -> Iterator[None]:
        start = time.time()
        try:
            yield
        finally:
            self.add(stage, start, time.time(), for_step, items)

    def discard(self) -> None:
        """Forget the spans of a step that failed (its row is not logged)."""
        with self._lock:
            self._spans = []

    def close_step(self, step: int, start: float, end: float, *, mode: str) -> dict[str, float]:
        """The ``pipeline/*`` metrics of the window ``[start, end]`` (wall clock); the spans that ended by ``end``
        are written to the JSON-lines file and forgotten, later ones are kept for the next step."""
        with self._lock:
            spans = [s for s in self._spans if s.end <= end + 1e-6]
            self._spans = [s for s in self._spans if s.end > end + 1e-6]
        metrics, chain = pipeline_metrics(spans, start, end)
        if self.path is not None:
            record: dict[str, Any] = {
                "step": step,
                "pipeline": mode,
                "start": start,
                "end": end,
                "spans": [asdict(s) for s in sorted(spans, key=lambda s: s.start)],
                "critical_path": [s.stage for s in chain],
                "critical_stage": critical_stage(chain, start, end),
                **metrics,
            }
            try:
                with open(self.path, "a") as handle:
                    handle.write(json.dumps(record) + "\n")
            except OSError as exc:  # telemetry must not stop training
                logger.warning("could not append to %s: %s", self.path, exc)
        return metrics


def _clip(spans: Sequence[Span], start: float, end: float) -> list[tuple[float, float]]:
    return [(max(s.start, start), min(s.end, end)) for s in spans if min(s.end, end) > max(s.start, start)]


def union_length(intervals: Sequence[tuple[float, float]]) -> float:
    total, cur_start, cur_end = 0.0, None, None
    for a, b in sorted(intervals):
        if cur_end is None or a > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start  # type: ignore[operator]
            cur_start, cur_end = a, b
        else:
            cur_end = max(cur_end, b)
    if cur_end is not None:
        total += cur_end - cur_start  # type: ignore[operator]
    return total


def critical_chain(spans: Sequence[Span], start: float, end: float) -> list[Span]:
    """Backwards from ``end``: the span that ended last, then the one that ended last before it started (when none
    had ended by then — a stage fed while it ran, as in streaming — the earliest-started one still running, of the
    same batch when there is one), …"""
    chain: list[Span] = []
    cursor = end + 1e-6
    candidates = [s for s in spans if min(s.end, end) > max(s.start, start)]
    while cursor > start:
        left = [s for s in candidates if s not in chain and s.start < cursor]
        ended = [s for s in left if s.end <= cursor]
        if ended:
            last = max(ended, key=lambda s: (s.end, s.end - s.start))
        elif left:  # prefer a stage of the same batch (what fed the current one), else any
            same = [s for s in left if chain and s.for_step == chain[-1].for_step]
            last = min(same or left, key=lambda s: s.start)
        else:
            break
        chain.append(last)
        cursor = last.start
    return chain[::-1]


def critical_stage(chain: Sequence[Span], start: float, end: float) -> str | None:
    held: dict[str, float] = {}
    for s in chain:
        held[s.stage] = held.get(s.stage, 0.0) + min(s.end, end) - max(s.start, start)
    return max(held, key=held.__getitem__) if held else None


def pipeline_metrics(spans: Sequence[Span], start: float, end: float) -> tuple[dict[str, float], list[Span]]:
    """``pipeline/busy/<pool>``, ``pipeline/overlap_s``, ``pipeline/critical_path_s`` and ``pipeline/wall_s`` of the
    window, and the critical chain."""
    wall = max(end - start, 1e-9)
    metrics: dict[str, float] = {"pipeline/wall_s": end - start}
    for pool in POOLS:
        mine = [s for s in spans if pool in STAGE_POOLS.get(s.stage, ())]
        metrics[f"pipeline/busy/{pool}"] = union_length(_clip(mine, start, end)) / wall
    per_stage = sum(
        union_length(_clip([s for s in spans if s.stage == st], start, end)) for st in {s.stage for s in spans}
    )
    metrics["pipeline/overlap_s"] = per_stage - union_length(_clip(spans, start, end))
    chain = critical_chain(spans, start, end)
    metrics["pipeline/critical_path_s"] = union_length(_clip(chain, start, end))
    return metrics, chain
