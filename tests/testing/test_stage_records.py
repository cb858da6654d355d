"""What the simulated stages record and what the pipeline benchmark measures from it: busy fractions, overlaps,
staleness, the judge server's calls as intervals, and the step clock around the run's telemetry."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from easyr1.testing.stage_records import (
    BusyLog,
    Interval,
    StepClock,
    busy_fraction,
    judge_intervals,
    measured_staleness,
    merged,
    overlap_seconds,
    read_intervals,
)


def _iv(pool: str, start: float, end: float, member: str = "m", kind: str = "work", **info) -> Interval:
    return Interval(pool, member, kind, start, end, info)


def test_busy_log_writes_complete_intervals_per_member(tmp_path: Path) -> None:
    log = BusyLog(tmp_path, "editor", "r0")
    with log.busy("edit", images=3) as info:
        time.sleep(0.05)
        info["extra"] = 1
    log.record("edit", 1.0, 2.0)
    first, second = sorted(read_intervals(tmp_path), key=lambda iv: iv.info.get("images", 0), reverse=True)
    assert (first.pool, first.member, first.kind) == ("editor", "r0", "edit")
    assert first.end - first.start >= 0.05 and first.info == {"images": 3, "extra": 1}
    assert (second.start, second.end) == (1.0, 2.0)
    assert BusyLog(None, "actor", "rank0").path is None


def test_busy_fraction_merging_and_overlap() -> None:
    a = [_iv("editor", 0, 2, "r0"), _iv("editor", 1, 3, "r1"), _iv("editor", 9, 12, "r0")]
    # two replicas over [0, 10]: 2 + 2 + 1 busy seconds of 20
    assert busy_fraction(a, 0, 10, capacity=2) == pytest.approx(0.25)
    assert merged(a, 0, 10) == [(0, 3), (9, 10)]
    b = [_iv("judge", 2.5, 9.5)]
    assert overlap_seconds(a, b, 0, 10) == pytest.approx(0.5 + 0.5)
    assert overlap_seconds(a, [], 0, 10) == 0.0
    with pytest.raises(ValueError):
        busy_fraction(a, 5, 5, capacity=1)


def test_judge_intervals_from_server_records() -> None:
    stats = {"records": [{"t": 10.0, "dimension": "lighting", "mode": "per_dimension"}, {"t": 11.0, "mode": "x"}]}
    ivs = judge_intervals(stats, 0.5)
    assert [(iv.pool, iv.kind, iv.start, iv.end) for iv in ivs] == [
        ("judge", "lighting", 10.0, 10.5),
        ("judge", "x", 11.0, 11.5),
    ]


def test_staleness_is_update_version_minus_generation_version() -> None:
    intervals = [
        _iv("rollout", 0, 1, kind="generate", version=0, prompt_ids=["a", "b"]),
        _iv("actor", 2, 3, kind="update", version=0, prompt_ids=["a", "a", "b", "b"]),  # on-policy
        _iv("rollout", 2, 3, kind="generate", version=0, prompt_ids=["c"]),  # during update 0: old weights
        _iv("actor", 4, 5, kind="update", version=1, prompt_ids=["c", "c"]),  # one step off
        _iv("actor", 6, 7, kind="update", version=2, prompt_ids=["z"]),  # never generated
    ]
    assert measured_staleness(intervals) == {"0": 4, "1": 2, "unknown": 1}


def test_step_clock_times_rows_and_passes_calls_on() -> None:
    class Telemetry:
        def __init__(self):
            self.logged, self.closed = [], False

        def log_step(self, step, metrics):
            self.logged.append((step, dict(metrics)))

        def close(self):
            self.closed = True

    inner = Telemetry()
    clock = StepClock(inner)
    clock.log_step(1, {"a": 1.0})
    clock.log_step(2, {"a": 2.0})
    clock.close()
    assert [s for s, _ in clock.ends] == [1, 2] and clock.ends[0][1] <= clock.ends[1][1]
    assert clock.rows == [{"a": 1.0}, {"a": 2.0}] and inner.logged == [(1, {"a": 1.0}), (2, {"a": 2.0})]
    assert inner.closed
