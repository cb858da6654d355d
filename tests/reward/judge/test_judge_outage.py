"""judge.outage_budget_s: transient failures beyond the SDK's retries are waited out (backoff, Retry-After) until
the budget is spent; then the sample is masked as ``outage`` and counted, never scored."""

from __future__ import annotations

import time

from judge_testkit import make_requests

from easyr1.testing.judge_server import Rule, ServerBehaviour


def test_outage_shorter_than_the_budget_is_waited_out(server, make_judge) -> None:
    server.behaviour = ServerBehaviour(down=[[0.0, 2.0]])
    judge = make_judge(mode="single_call", outage_budget_s=30.0)
    start = time.monotonic()
    results = judge.score_batch(make_requests(4))
    elapsed = time.monotonic() - start
    assert [r.reason for r in results] == [None] * 4
    assert all(r.valid and r.scores for r in results)
    assert elapsed >= 2.0  # nothing was answered while the server was down
    stats = server.stats()["by_kind"]
    assert stats["down"] >= 4 and stats["ok"] == 4
    drained = judge.stats.drain()
    assert drained.waiting_s >= 1.5
    assert drained.to_metrics()["judge/waiting_s"] == drained.waiting_s
    assert drained.failures == {}


def test_outage_longer_than_the_budget_is_masked_as_outage(server, make_judge) -> None:
    server.behaviour = ServerBehaviour(down=[[0.0, 60.0]])
    judge = make_judge(mode="per_dimension", outage_budget_s=2.0)
    start = time.monotonic()
    results = judge.score_batch(make_requests(3))
    elapsed = time.monotonic() - start
    assert [r.reason for r in results] == ["outage"] * 3
    assert all(not r.valid and r.scores is None for r in results)
    assert elapsed < 10.0  # the budget bounds the wait (plus one round of calls)
    stats = judge.stats.drain()
    assert stats.failures == {"outage": 3} and stats.invalid == 3 and stats.valid == 0
    assert stats.call_outcomes.get("ok", 0) == 0


def test_zero_budget_keeps_the_transient_reason(server, make_judge) -> None:
    server.behaviour = ServerBehaviour(down=[[0.0, 60.0]])
    judge = make_judge(mode="single_call", outage_budget_s=0.0)
    results = judge.score_batch(make_requests(2))
    assert [r.reason for r in results] == ["server_error"] * 2
    assert judge.stats.drain().waiting_s == 0.0


def test_retry_after_is_honoured_by_the_outage_wait(server, make_judge) -> None:
    # 429 with Retry-After 1.5 s for the first two requests; max_retries=0 leaves the waiting to the outage budget
    server.behaviour = ServerBehaviour(rules=[Rule(kind="rate_limit", times=2, retry_after=1.5)])
    judge = make_judge(mode="single_call", outage_budget_s=30.0)
    start = time.monotonic()
    results = judge.score_batch(make_requests(2))
    assert [r.valid for r in results] == [True, True]
    assert time.monotonic() - start >= 1.5


def test_non_transient_failures_are_not_retried(server, make_judge) -> None:
    server.behaviour = ServerBehaviour(rules=[Rule(kind="malformed"), Rule(kind="bad_request")])
    judge = make_judge(mode="single_call", outage_budget_s=30.0)
    start = time.monotonic()
    results = judge.score_batch(make_requests(2))
    assert [r.reason for r in results] == ["unparsable"] * 2
    assert time.monotonic() - start < 2.0
    assert server.stats()["request_count"] == 2


def test_only_the_failed_dimension_is_sent_again(server, make_judge) -> None:
    server.behaviour = ServerBehaviour(rules=[Rule(kind="server_error", dimension="logical_causal", times=1)])
    judge = make_judge(mode="per_dimension", outage_budget_s=30.0)
    results = judge.score_batch(make_requests(1))
    assert results[0].valid
    assert server.stats()["request_count"] == 6  # five dimensions, one of them twice


def test_outage_started_by_the_nth_request_is_waited_out(server, make_judge) -> None:
    server.behaviour = ServerBehaviour(down_at_requests=[[2, 1.5]])
    judge = make_judge(mode="single_call", outage_budget_s=30.0, max_concurrency=1)
    results = judge.score_batch(make_requests(3))
    assert [r.valid for r in results] == [True, True, True]
    assert server.stats()["by_kind"]["down"] >= 1
    assert judge.stats.drain().waiting_s > 0
