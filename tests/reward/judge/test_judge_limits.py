"""Concurrency bound, requests/tokens per minute, and the batch deadline."""

from __future__ import annotations

import time

import pytest
from judge_testkit import make_requests

from easyr1.reward.judge import openai_judge as openai_judge_module
from easyr1.testing.judge_server import Rule, ServerBehaviour


@pytest.mark.parametrize("limit", [1, 3, 8])
def test_concurrency_never_exceeds_the_limit(server, make_judge, limit: int) -> None:
    server.behaviour = ServerBehaviour(latency_s=0.1)
    results = make_judge(max_concurrency=limit).score_batch(make_requests(2 if limit == 1 else 6))  # 10 or 30 calls
    assert all(r.valid for r in results)
    assert server.max_in_flight == limit  # reached, never exceeded


def _max_arrivals_within(times: list[float], window: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end in range(len(times)):
        while times[end] - times[start] > window:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_requests_per_minute_limit(server, make_judge, monkeypatch) -> None:
    # a 1-second "minute" keeps the test short; the limiter is the same object as in production
    monkeypatch.setattr(openai_judge_module, "RATE_WINDOW_S", 1.0)
    judge = make_judge(mode="single_call", requests_per_minute=5, max_concurrency=16)
    start = time.monotonic()
    results = judge.score_batch(make_requests(12))
    elapsed = time.monotonic() - start
    assert all(r.valid for r in results)
    arrivals = [r["t"] for r in server.stats()["records"]]
    # leaky bucket: a burst of at most 5, then 5 per second
    assert _max_arrivals_within(arrivals, 0.5) <= 5 + 3
    assert elapsed >= (12 - 5) / 5 * 0.9


def test_tokens_per_minute_limit(server, make_judge, monkeypatch) -> None:
    monkeypatch.setattr(openai_judge_module, "RATE_WINDOW_S", 1.0)
    judge = make_judge(mode="single_call", max_tokens=300, max_concurrency=16)
    per_call = judge._build_call(None, "x", [], False).estimated_tokens  # text-only estimate + max_tokens
    assert per_call > 300
    judge.close()
    # each call here is estimated at ≈ per_call + 2 low-detail images (170 tokens); allow 3 calls per window
    budget = 3 * (per_call + 200)
    judge = make_judge(mode="single_call", max_tokens=300, max_concurrency=16, tokens_per_minute=budget)
    start = time.monotonic()
    results = judge.score_batch(make_requests(9))
    assert all(r.valid for r in results)
    assert time.monotonic() - start >= 1.0  # 9 calls at ~3 per second after a burst of ~3


def test_deadline_cuts_off_unfinished_samples(server, make_judge) -> None:
    server.behaviour = ServerBehaviour(latency_s=0.01, rules=[Rule(kind="hang", match="sample-2:")])
    judge = make_judge(batch_deadline_s=0.8, timeout_s=30)
    seen: dict[int, str | None] = {}
    start = time.monotonic()
    results = judge.score_batch(make_requests(4), on_result=lambda i, r: seen.setdefault(i, r.reason))
    elapsed = time.monotonic() - start
    assert 0.8 <= elapsed < 2.5, elapsed
    assert [r.valid for r in results] == [True, True, False, True]
    assert results[2].reason == "deadline" and results[2].scores is None and results[2].calls == 5
    assert seen == {0: None, 1: None, 2: "deadline", 3: None}
    assert judge.stats.snapshot().failures == {"deadline": 1}
    # the judge stays usable after a deadline
    server.behaviour = ServerBehaviour()
    assert all(r.valid for r in judge.score_batch(make_requests(2)))


def test_deadline_covers_queued_calls(server, make_judge) -> None:
    server.behaviour = ServerBehaviour(latency_s=0.3)
    results = make_judge(max_concurrency=1, batch_deadline_s=0.5, mode="single_call").score_batch(make_requests(5))
    assert results[0].valid
    assert {r.reason for r in results[2:]} == {"deadline"}
    assert all(r.calls == 0 for r in results[3:])  # never sent
