"""Retried judge calls reach metrics.jsonl (``judge/retries/<cause>``) even when every call succeeds in the end."""

from __future__ import annotations

import json

from test_grpo_step import data_dir, make  # noqa: F401 (data_dir is a fixture)

from easyr1.config import JudgeConfig
from easyr1.reward.judge.openai_judge import OpenAIJudge
from easyr1.testing.judge_server import JudgeTestServer, Rule, ServerBehaviour


def test_retries_are_logged_per_step(data_dir, tmp_path):  # noqa: F811
    behaviour = ServerBehaviour(
        rules=[
            Rule(kind="rate_limit", times=2, retry_after=0.01),
            Rule(kind="server_error", times=1, retry_after=0.01, status=502),
        ]
    )
    with JudgeTestServer(behaviour) as server:
        cfg = JudgeConfig(backend="openai", base_url=server.base_url, mode="single_call", max_retries=3, timeout_s=5)
        with OpenAIJudge(cfg, api_key="sk-test") as judge:
            trainer, comps = make(data_dir, tmp_path, judge=judge)
            trainer.train_step()
            trainer.train_step()
            comps.telemetry.close()
    first, second = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert first["judge/retries/http_429"] == 2 and first["judge/retries/http_502"] == 1
    assert first["samples/judge_failed"] == 0  # the retries hid nothing: every call succeeded
    assert not any(k.startswith("judge/retries/") for k in second)  # counts per step, not running totals
