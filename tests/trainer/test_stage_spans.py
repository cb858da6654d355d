"""The stage-span arithmetic behind ``pipeline/*``: busy shares are unions per pool, overlap counts only different
stages at once, the critical chain follows the spans that end the step, and the JSON line holds the window."""

from __future__ import annotations

import json
import threading
import time

import pytest

from easyr1.trainer.stage_spans import (
    Span,
    StageSpans,
    critical_chain,
    perf_to_wall,
    pipeline_metrics,
    union_length,
)


def test_union_length_merges_overlaps_and_gaps():
    assert union_length([]) == 0.0
    assert union_length([(0, 1), (0.5, 2), (3, 4)]) == pytest.approx(3.0)
    assert union_length([(3, 4), (0, 10)]) == pytest.approx(10.0)


def staged_like(t0: float) -> list[Span]:
    return [
        Span("rollout", t0 + 0, t0 + 2, 1),
        Span("edit", t0 + 2, t0 + 4, 1),
        Span("judge", t0 + 4, t0 + 5, 1),
        Span("judge", t0 + 4, t0 + 5, 1),  # concurrent calls of one stage: no overlap
        Span("update", t0 + 5, t0 + 7, 1),
        Span("sync", t0 + 7, t0 + 8, 1),
    ]


def test_staged_spans_have_no_overlap_and_a_full_critical_path():
    m, chain = pipeline_metrics(staged_like(100.0), 100.0, 108.0)
    assert m["pipeline/overlap_s"] == pytest.approx(0.0)
    assert m["pipeline/critical_path_s"] == pytest.approx(8.0)
    assert [s.stage for s in chain] == ["rollout", "edit", "judge", "update", "sync"]
    assert m["pipeline/busy/rollout"] == pytest.approx(3 / 8)  # rollout + sync
    assert m["pipeline/busy/actor"] == pytest.approx(3 / 8)  # update + sync
    assert m["pipeline/busy/editor"] == pytest.approx(2 / 8)
    assert m["pipeline/busy/judge"] == pytest.approx(1 / 8)


def test_off_policy_spans_overlap_and_the_next_rollout_is_off_the_critical_path():
    t0 = 50.0
    spans = [
        Span("rollout", t0 + 0, t0 + 2, 3),  # the next step's batch
        Span("old_logprob", t0 + 2, t0 + 2.5, 3),
        Span("edit", t0 + 0, t0 + 2, 2),
        Span("judge", t0 + 1, t0 + 3, 2),
        Span("update", t0 + 3, t0 + 5, 2),
        Span("sync", t0 + 5, t0 + 5.5, 2),
    ]
    m, chain = pipeline_metrics(spans, t0, t0 + 5.5)
    # Per-stage unions 2 + 0.5 + 2 + 2 + 2 + 0.5 = 9 over a union of 5.5 seconds.
    assert m["pipeline/overlap_s"] == pytest.approx(3.5)
    assert [s.stage for s in chain] == ["edit", "judge", "update", "sync"]
    assert m["pipeline/critical_path_s"] == pytest.approx(5.5)
    assert m["pipeline/busy/actor"] == pytest.approx(3.0 / 5.5)


def test_a_stage_fed_while_it_ran_leads_back_to_its_feeder():
    spans = [Span("rollout", 0.5, 2.0, 1), Span("edit", 1.0, 3.0, 1), Span("judge", 3.0, 4.0, 1)]
    chain = critical_chain(spans, 0.0, 4.0)
    assert [s.stage for s in chain] == ["rollout", "edit", "judge"]


def test_close_step_writes_the_window_and_keeps_later_spans(tmp_path):
    spans = StageSpans(tmp_path / "stage_spans.jsonl")
    t0 = time.time()
    spans.add("rollout", t0, t0 + 1, 1, 8)
    spans.add("edit", t0 + 1, t0 + 2, 1)
    spans.add("rollout", t0 + 2.5, t0 + 9, 2)  # still running at the window's end: the next step's
    m = spans.close_step(1, t0, t0 + 2, mode="staged")
    assert m["pipeline/wall_s"] == pytest.approx(2.0)
    (line,) = [json.loads(x) for x in (tmp_path / "stage_spans.jsonl").read_text().splitlines()]
    assert line["step"] == 1 and line["pipeline"] == "staged" and line["critical_stage"] in ("rollout", "edit")
    assert [s["stage"] for s in line["spans"]] == ["rollout", "edit"] and line["spans"][0]["items"] == 8
    m2 = spans.close_step(2, t0 + 2, t0 + 9, mode="staged")
    assert m2["pipeline/busy/rollout"] == pytest.approx(6.5 / 7)


def test_perf_counter_spans_are_moved_onto_the_wall_clock(tmp_path):
    spans = StageSpans(None)
    now_perf, now_wall = time.perf_counter(), time.time()
    spans.add("judge", now_perf - 1.0, now_perf, 1)
    m = spans.close_step(1, now_wall - 2.0, now_wall + 0.1, mode="streaming")
    assert m["pipeline/busy/judge"] == pytest.approx(1.0 / 2.1, rel=0.05)


def test_perf_to_wall_matches_the_wall_clock():
    assert perf_to_wall(time.perf_counter()) == pytest.approx(time.time(), abs=0.05)


def test_spans_added_from_many_threads_while_steps_close_are_each_written_once(tmp_path):
    """A scorer's workers add spans as their calls end while the driver closes steps: every span lands in exactly one
    record — the first whose window ends after it ended and was added."""
    spans = StageSpans(tmp_path / "stage_spans.jsonl")
    t0 = time.time()

    def worker(k):
        for i in range(200):
            start = t0 + k + i * 1e-4
            spans.add("edit" if k % 2 else "judge", start, start + 1e-4, 2, i)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for step, end in enumerate((t0 + 1.5, t0 + 2.5, t0 + 10), start=1):
        if step == 3:
            for t in threads:
                t.join()
        spans.close_step(step, end - 1.0, end, mode="off_policy_1")
    lines = [json.loads(x) for x in (tmp_path / "stage_spans.jsonl").read_text().splitlines()]
    written = [(s["stage"], s["start"]) for x in lines for s in x["spans"]]
    assert len(written) == len(set(written)) == 800
    for x in lines:
        assert all(s["end"] <= x["end"] + 1e-6 for s in x["spans"])
