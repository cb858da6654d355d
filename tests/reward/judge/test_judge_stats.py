"""``JudgeStats.from_results``: the per-step judge metrics of a judge without counters of its own (the sandbox)."""

from __future__ import annotations

import pytest

from easyr1.reward.judge.protocol import JudgeResult
from easyr1.reward.judge.stats import JudgeStats


def test_metrics_from_results_count_outcomes_cache_tokens_cost_and_latency():
    scores = {"x": 5.0}
    results = [
        JudgeResult(scores, True, prompt_tokens=100, completion_tokens=10, latency_s=1.0),
        JudgeResult(scores, True, prompt_tokens=100, completion_tokens=10, latency_s=3.0),
        JudgeResult(scores, True, cached=True, prompt_tokens=50, completion_tokens=5, latency_s=9.0),
        JudgeResult.failure("timeout", latency_s=2.0),
        JudgeResult(None, False, latency_s=4.0),
    ]
    metrics = JudgeStats.from_results(results, 1.0, 2.0).to_metrics()
    assert metrics["judge/requests/ok"] == 2 and metrics["judge/requests/timeout"] == 1
    assert metrics["judge/requests/failed"] == 1 and metrics["judge/requests/cached"] == 1
    assert metrics["judge/cache_hits"] == 1 and metrics["judge/cache_misses"] == 4
    assert metrics["judge/prompt_tokens"] == 250 and metrics["judge/completion_tokens"] == 25
    assert metrics["judge/cost_usd"] == pytest.approx(0.25 * 1.0 + 0.025 * 2.0)
    assert metrics["judge/latency_p50_s"] == pytest.approx(2.5)  # the cached result's 9 s is not a call
    assert metrics["judge/latency_p95_s"] == pytest.approx(3.85)
    stats = JudgeStats.from_results(results)
    assert (stats.samples, stats.valid, stats.failures) == (5, 3, {"timeout": 1, "failed": 1})
