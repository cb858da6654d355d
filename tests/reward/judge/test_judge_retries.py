"""Retries the SDK makes (429, 5xx, timeouts, refused connections) are counted by cause, even when the call
succeeds in the end, and reach the per-step metrics (``judge/retries/<cause>``)."""

from __future__ import annotations

import socket

import pytest
from judge_testkit import API_KEY, make_requests

from easyr1.config import JudgeConfig
from easyr1.reward.judge.openai_judge import OpenAIJudge
from easyr1.testing.judge_server import Rule, ServerBehaviour


@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
def test_retried_429_and_500_are_counted_by_status(server, make_judge, http_client) -> None:
    server.behaviour = ServerBehaviour(
        rules=[
            Rule(kind="rate_limit", match="sample-0:", times=2, retry_after=0.01),
            Rule(kind="server_error", match="sample-1:", times=1, retry_after=0.01, status=503),
        ]
    )
    judge = make_judge(mode="single_call", max_retries=3, http_client=http_client)
    results = judge.score_batch(make_requests(3))
    assert all(r.valid for r in results)  # every call succeeded in the end ...
    stats = judge.stats.drain()
    assert stats.retries == {"http_429": 2, "http_503": 1}  # ... and the retries are still visible
    assert stats.call_outcomes == {"ok": 3}
    metrics = stats.to_metrics()
    assert metrics["judge/retries/http_429"] == 2 and metrics["judge/retries/http_503"] == 1
    assert judge.stats.drain().retries == {}  # per step, not running totals


def test_final_failure_counts_its_retries_too(server, make_judge) -> None:
    server.behaviour = ServerBehaviour(rules=[Rule(kind="rate_limit", retry_after=0.01)])
    judge = make_judge(mode="single_call", max_retries=2)
    (result,) = judge.score_batch(make_requests(1))
    assert result.reason == "rate_limited"
    stats = judge.stats.snapshot()
    assert stats.retries == {"http_429": 2} and stats.http_status == {"429": 3}


def test_timeouts_are_counted(server, make_judge) -> None:
    server.behaviour = ServerBehaviour(rules=[Rule(kind="hang", times=1)])
    judge = make_judge(mode="single_call", max_retries=1, timeout_s=0.3)
    (result,) = judge.score_batch(make_requests(1))
    assert result.valid
    assert judge.stats.snapshot().retries == {"timeout": 1}


@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
def test_refused_connections_are_counted(http_client) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = JudgeConfig(
        backend="openai",
        base_url=f"http://127.0.0.1:{port}/v1",
        max_retries=1,
        timeout_s=2,
        http_client=http_client,
        outage_budget_s=0,
    )
    with OpenAIJudge(cfg, api_key=API_KEY) as judge:
        (result,) = judge.score_batch(make_requests(1))
        assert result.reason == "server_error"
        assert judge.stats.snapshot().retries == {"connection_error": 1}
