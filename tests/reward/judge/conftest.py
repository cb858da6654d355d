"""Fixtures of the judge tests: a loopback OpenAI-compatible server and judges pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from judge_testkit import API_KEY

from easyr1.config import JudgeConfig
from easyr1.reward.judge.openai_judge import OpenAIJudge
from easyr1.testing.judge_server import JudgeTestServer, ServerBehaviour


@pytest.fixture
def server() -> Iterator[JudgeTestServer]:
    with JudgeTestServer(ServerBehaviour()) as srv:
        yield srv


@pytest.fixture
def make_judge(server: JudgeTestServer) -> Iterator[Callable[..., OpenAIJudge]]:
    judges: list[OpenAIJudge] = []

    def make(api_key: str = API_KEY, **overrides: object) -> OpenAIJudge:
        settings: dict[str, object] = {
            "backend": "openai",
            "base_url": server.base_url,
            "model": "judge-test",
            "max_retries": 0,
            "timeout_s": 5.0,
            "mode": "per_dimension",
            "outage_budget_s": 0.0,  # transient failures final at once (test_judge_outage.py covers the waiting)
        }
        settings.update(overrides)
        cfg = JudgeConfig(**settings)  # type: ignore[arg-type]
        errors = list(cfg.validate("judge"))
        assert not errors, errors
        judge = OpenAIJudge(cfg, api_key=api_key)
        judges.append(judge)
        return judge

    yield make
    for judge in judges:
        judge.close()
