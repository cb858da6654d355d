"""Every failure ends as the right reason with no score, and never as a substitute value."""

from __future__ import annotations

import socket
import time

import pytest
from judge_testkit import API_KEY, make_requests

from easyr1.config import JudgeConfig
from easyr1.reward.judge.openai_judge import OpenAIJudge
from easyr1.testing.judge_server import Rule, ServerBehaviour

CASES = [
    # (kind, mode, expected reason)
    ("malformed", "per_dimension", "unparsable"),
    ("malformed", "single_call", "unparsable"),
    ("out_of_range", "per_dimension", "unparsable"),
    ("out_of_range", "single_call", "unparsable"),
    ("refusal", "single_call", "refused"),
    ("prose_refusal", "per_dimension", "refused"),
    ("content_filter", "per_dimension", "refused"),
    ("policy_violation", "single_call", "refused"),
    ("rate_limit", "per_dimension", "rate_limited"),
    ("server_error", "single_call", "server_error"),
    ("bad_request", "per_dimension", "client_error"),
    ("unauthorized", "single_call", "client_error"),
    ("garbage_body", "single_call", "server_error"),
]


@pytest.mark.parametrize(("kind", "mode", "reason"), CASES)
def test_failure_kind_becomes_reason(server, make_judge, kind: str, mode: str, reason: str) -> None:
    # sample 1 fails on one dimension only (or its single call); samples 0 and 2 are fine
    server.behaviour = ServerBehaviour(
        rules=[Rule(kind=kind, match="sample-1:", dimension="logical_causal" if mode == "per_dimension" else None)]
    )
    judge = make_judge(mode=mode)
    results = judge.score_batch(make_requests(3))
    assert [r.valid for r in results] == [True, False, True]
    failed = results[1]
    assert failed.reason == reason and failed.scores is None
    stats = judge.stats.snapshot()
    assert stats.failures == {reason: 1} and stats.invalid == 1 and stats.valid == 2
    assert stats.call_outcomes[reason] == 1


@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
def test_hang_ends_as_timeout(server, make_judge, http_client: str) -> None:
    server.behaviour = ServerBehaviour(rules=[Rule(kind="hang", match="sample-0:")])
    judge = make_judge(mode="single_call", timeout_s=0.3, http_client=http_client)
    start = time.monotonic()
    results = judge.score_batch(make_requests(2))
    assert time.monotonic() - start < 3.0
    assert results[0].reason == "timeout" and results[0].scores is None
    assert results[1].valid


@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
def test_unreachable_server_is_a_server_error(http_client: str) -> None:
    with socket.socket() as sock:  # a port that nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = JudgeConfig(
        backend="openai",
        base_url=f"http://127.0.0.1:{port}/v1",
        max_retries=0,
        timeout_s=2,
        http_client=http_client,
        outage_budget_s=0,
    )
    with OpenAIJudge(cfg, api_key=API_KEY) as judge:
        results = judge.score_batch(make_requests(2))
    assert [r.reason for r in results] == ["server_error", "server_error"]


@pytest.mark.parametrize("kind", ["bad_request", "unauthorized", "policy_violation"])
def test_no_retry_on_client_errors(server, make_judge, kind: str) -> None:
    server.behaviour = ServerBehaviour(rules=[Rule(kind=kind)])
    results = make_judge(mode="single_call", max_retries=3).score_batch(make_requests(1))
    assert not results[0].valid
    assert server.request_count == 1


def test_retries_server_errors_then_succeeds(server, make_judge) -> None:
    server.behaviour = ServerBehaviour(rules=[Rule(kind="server_error", status=503, times=2, retry_after=0.05)])
    judge = make_judge(mode="single_call", max_retries=3)
    (result,) = judge.score_batch(make_requests(1))
    assert result.valid and result.calls == 1
    assert server.request_count == 3
    assert judge.stats.snapshot().http_status == {"503": 2, "200": 1}


def test_retries_exhausted_keep_the_reason(server, make_judge) -> None:
    server.behaviour = ServerBehaviour(rules=[Rule(kind="rate_limit", retry_after=0.05)])
    (result,) = make_judge(mode="single_call", max_retries=2).score_batch(make_requests(1))
    assert result.reason == "rate_limited"
    assert server.request_count == 3


def test_retry_after_is_honoured(server, make_judge) -> None:
    server.behaviour = ServerBehaviour(rules=[Rule(kind="rate_limit", times=1, retry_after=1.0)])
    (result,) = make_judge(mode="single_call", max_retries=2).score_batch(make_requests(1))
    assert result.valid
    first, second = server.stats()["records"]
    waited = second["t"] - first["t"]
    assert 1.0 <= waited < 1.8, waited


def test_api_key_sent_as_bearer_and_wrong_key_rejected(server, make_judge) -> None:
    server.behaviour = ServerBehaviour(require_api_key=API_KEY)
    assert make_judge(mode="single_call").score_batch(make_requests(1))[0].valid
    (result,) = make_judge(mode="single_call", api_key="sk-wrong").score_batch(make_requests(1))
    assert result.reason == "client_error"
