"""What the simulated stages record, and what the pipeline benchmark measures from it.

Every simulated component (``easyr1.testing.simulated_stages``) appends its busy intervals — ``time.monotonic()``,
one clock for every process of the machine — to ``<record_dir>/<pool>-<member>-<pid>.jsonl`` through a
:class:`BusyLog`; the loopback judge server's request records become intervals with :func:`judge_intervals`.
:func:`busy_fraction`, :func:`overlap_seconds` and :func:`measured_staleness` turn them into per-pool busy
fractions, seconds two pools worked at once, and the staleness of each trained sample, independent of the driver's
own telemetry; :class:`StepClock` wraps the run's telemetry to time each step's row.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Interval:
    """One stretch of work of one pool member."""

    pool: str
    member: str
    kind: str
    start: float
    """``time.monotonic()`` at the start."""
    end: float
    info: dict[str, Any] = field(default_factory=dict)


class BusyLog:
    """Appends this member's busy intervals to ``<record_dir>/<pool>-<member>-<pid>.jsonl`` (no-op without a
    folder). One line per interval, written when it ends, so a reader sees only complete intervals."""

    def __init__(self, record_dir: str | Path | None, pool: str, member: str):
        self.pool, self.member = pool, member
        self.path = None if record_dir is None else Path(record_dir) / f"{pool}-{member}-{os.getpid()}.jsonl"
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def busy(self, kind: str, **info: Any) -> Iterator[dict[str, Any]]:
        """Time the block; ``info`` (and what the block adds to the yielded dict) is stored with the interval."""
        start = time.monotonic()
        try:
            yield info
        finally:
            self.record(kind, start, time.monotonic(), **info)

    def record(self, kind: str, start: float, end: float, **info: Any) -> None:
        if self.path is None:
            return
        line = {"pool": self.pool, "member": self.member, "kind": kind, "start": start, "end": end, "info": info}
        with self.path.open("a") as f:
            f.write(json.dumps(line) + "\n")


def read_intervals(record_dir: str | Path) -> list[Interval]:
    """Every interval recorded under ``record_dir``, ordered by start."""
    out = []
    for path in sorted(Path(record_dir).glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                d = json.loads(line)
                out.append(Interval(d["pool"], d["member"], d["kind"], d["start"], d["end"], d.get("info", {})))
    return sorted(out, key=lambda iv: iv.start)


def judge_intervals(server_stats: Mapping[str, Any], latency_s: float) -> list[Interval]:
    """The judge server's calls as intervals: arrival (the server's ``time.monotonic()``) to arrival + latency."""
    return [
        Interval("judge", "server", str(r.get("dimension") or r.get("mode")), r["t"], r["t"] + latency_s)
        for r in server_stats.get("records", [])
    ]


def busy_fraction(intervals: Sequence[Interval], start: float, end: float, capacity: int) -> float:
    """Busy time of ``intervals`` clipped to [start, end], over ``capacity`` × the window: the mean busy fraction
    of ``capacity`` members (engines, replicas, or the judge's concurrency slots) that each do one thing at a
    time."""
    if end <= start or capacity < 1:
        raise ValueError(f"busy_fraction needs end > start and capacity >= 1 (got {start}, {end}, {capacity})")
    busy = sum(max(0.0, min(iv.end, end) - max(iv.start, start)) for iv in intervals)
    return busy / (capacity * (end - start))


def merged(intervals: Sequence[Interval], start: float, end: float) -> list[tuple[float, float]]:
    """The union of ``intervals`` clipped to [start, end], as sorted disjoint (begin, end) pairs."""
    spans = sorted((max(iv.start, start), min(iv.end, end)) for iv in intervals if iv.end > start and iv.start < end)
    out: list[tuple[float, float]] = []
    for a, b in spans:
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def overlap_seconds(a: Sequence[Interval], b: Sequence[Interval], start: float, end: float) -> float:
    """Seconds within [start, end] in which something of ``a`` and something of ``b`` both ran (two pools
    working at the same time)."""
    total, ua, ub = 0.0, merged(a, start, end), merged(b, start, end)
    i = j = 0
    while i < len(ua) and j < len(ub):
        lo, hi = max(ua[i][0], ub[j][0]), min(ua[i][1], ub[j][1])
        total += max(0.0, hi - lo)
        if ua[i][1] < ub[j][1]:
            i += 1
        else:
            j += 1
    return total


def measured_staleness(intervals: Sequence[Interval]) -> dict[str, int]:
    """Per trained sample: the actor's weights version at its update minus the version the engine generated it
    with (0 on-policy, 1 one-step off-policy), counted by value (``unknown``: no generation of the prompt before the
    update was recorded). Needs the engines' ``generate`` and the actor's ``update`` intervals with their
    ``version`` and ``prompt_ids``."""
    generated: dict[str, list[tuple[float, int]]] = {}
    for iv in intervals:
        if iv.pool == "rollout" and iv.kind == "generate":
            for pid in iv.info.get("prompt_ids", []):
                generated.setdefault(pid, []).append((iv.start, int(iv.info["version"])))
    counts: dict[str, int] = {}
    for iv in intervals:
        if iv.pool == "actor" and iv.kind == "update":
            for pid in iv.info.get("prompt_ids", []):
                before = [v for t, v in generated.get(pid, []) if t < iv.start]
                key = str(int(iv.info["version"]) - before[-1]) if before else "unknown"
                counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


class StepClock:
    """The run's telemetry (every call passed on), plus the ``time.monotonic()`` at which each step's row was
    logged and the rows themselves."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.ends: list[tuple[int, float]] = []
        self.rows: list[dict[str, float]] = []

    def log_step(self, step: int, metrics: Mapping[str, float]) -> None:
        self.ends.append((int(step), time.monotonic()))
        self.rows.append(dict(metrics))
        self.inner.log_step(step, metrics)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
