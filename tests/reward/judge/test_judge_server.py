"""The test server itself: subprocess form, counters, behaviour control."""

from __future__ import annotations

import os

import psutil
import pytest
from judge_testkit import API_KEY, make_requests

from easyr1.config import JudgeConfig
from easyr1.reward.judge.openai_judge import OpenAIJudge
from easyr1.testing.judge_server import Rule, ServerBehaviour, SubprocessJudgeServer


def test_behaviour_round_trips_json() -> None:
    behaviour = ServerBehaviour(latency_s=0.2, scores={"logical_causal": 2.0}, rules=[Rule(kind="hang", times=1)])
    assert ServerBehaviour.from_dict(__import__("json").loads(behaviour.to_json())) == behaviour


@pytest.mark.slow
def test_subprocess_server_counts_and_switches_behaviour() -> None:
    with SubprocessJudgeServer(ServerBehaviour(latency_s=0.05)) as server:
        assert server.pid is not None and psutil.Process(server.pid).ppid() == os.getpid()
        cfg = JudgeConfig(
            backend="openai", base_url=server.base_url, mode="single_call", max_retries=0, outage_budget_s=0
        )
        with OpenAIJudge(cfg, api_key=API_KEY) as judge:
            assert all(r.valid for r in judge.score_batch(make_requests(4)))
            stats = server.stats()
            assert stats["request_count"] == 4 and 1 <= stats["max_in_flight"] <= 4
            server.set_behaviour(ServerBehaviour(rules=[Rule(kind="server_error", retry_after=None)]))
            assert {r.reason for r in judge.score_batch(make_requests(2))} == {"server_error"}
            server.reset()
            assert server.stats()["request_count"] == 0
    assert server.pid is None
