"""Smoke of ``benchmarks/pipeline.py``: its staged mode on a tiny setting through the real driver and pools (every
step completes, the JSON keys are there, the bounds follow the formulas), and the summary of a mode that is not
available is null, never a number. Behaviour only: a benchmark is not a timed test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmark_testkit import load_benchmark


def _bench():
    return load_benchmark("pipeline")


def test_bounds_follow_the_formulas() -> None:
    bench = _bench()
    s = bench.Setting("t", 1.0, 0.5, 4, 0.2, 10, 2.0, 0.3, prompts=4, n=8)
    assert (s.edits, s.calls) == (32, 160)
    assert s.edit_total_s == pytest.approx(0.5 * 32 / 4)
    assert s.judge_total_s == pytest.approx(0.2 * 160 / 10)
    assert s.bound_streaming_s == pytest.approx(1.0 + max(4.0, 3.2) + 2.0 + 0.3)
    assert s.bound_off_policy_s == pytest.approx(4.0)
    single = bench.Setting("t", 1.0, 0.5, 4, 0.2, 10, 2.0, 0.3, prompts=4, n=8, judge_mode="single_call")
    assert single.calls == 32


def test_an_unavailable_mode_is_null_and_its_goals_unmeasured() -> None:
    bench = _bench()
    setting = bench.SETTINGS["production"]
    run = {
        "step_s": 8.0,
        "step_s_each": [9.0, 8.0, 8.0],
        "busy": dict.fromkeys(bench.POOLS, 0.25),
        "overlap_s": {f"{a}+{b}": 0.0 for a, b in bench.PAIRS},
        "staleness": {"0": 192},
        "samples_valid": 192,
        "driver_pipeline": {},
        "driver_timings": {},
    }
    s = bench.summarise(setting, {"staged": run}, {"streaming": "no generate_stream"}, 3, 1)
    assert s["step_s_staged"] == 8.0
    assert s["step_s_streaming"] is None and s["step_s_off_policy"] is None
    assert s["ratio_streaming_to_bound"] is None and s["throughput_ratio_off_policy_vs_staged"] is None
    assert s["busy_off_policy"] is None and s["unavailable"] == {"streaming": "no generate_stream"}
    assert set(s["goals"].values()) == {None}
    json.dumps(s)


@pytest.mark.slow
def test_staged_mode_runs_the_real_driver(tmp_path: Path) -> None:
    bench = _bench()
    setting = bench.Setting("smoke", 0.2, 0.02, 2, 0.05, 8, 0.1, 0.05, prompts=4, n=2, engines=1)
    s = bench.run_setting(setting, ["staged"], steps=3, warmup=1, out=tmp_path)
    assert s["unavailable"] == {}
    assert s["step_s_staged"] is not None and s["step_s_staged"] > 0
    assert s["step_s_streaming"] is None and s["step_s_off_policy"] is None  # not asked for: null, not guessed
    assert len(s["step_s_each_staged"]) == 3
    assert s["samples_valid_staged"] == 3 * 8  # every sample edited, judged and valid
    assert s["staleness_staged"] == {"0": 24}  # on-policy: every trained sample from the weights just synced
    assert s["bound_streaming_s"] == pytest.approx(0.2 + max(0.02 * 8 / 2, 0.05 * 40 / 8) + 0.1 + 0.05, abs=1e-3)
    assert s["bound_off_policy_s"] == pytest.approx(0.25, abs=1e-3)
    busy = s["busy_staged"]
    assert set(busy) == set(bench.POOLS) and all(0 < v <= 1 for v in busy.values())
    assert s["overlap_s_staged"]["editor+judge"] == pytest.approx(0.0, abs=0.02)  # staged: edit, then judge
    for key in (
        "step_s_staged",
        "step_s_streaming",
        "step_s_off_policy",
        "bound_streaming_s",
        "bound_off_policy_s",
        "ratio_streaming_to_bound",
        "ratio_off_policy_to_bound",
        "throughput_ratio_off_policy_vs_staged",
        "busy_staged",
        "busy_streaming",
        "busy_off_policy",
        "goals",
    ):
        assert key in s
    json.dumps(s)


def test_the_rollout_log_probs_row_has_its_own_keys_and_goals() -> None:
    bench = _bench()
    assert bench.MODES[-1] == "off_policy_1+rollout_lp" and bench.MODES[:3] == ("staged", "streaming", "off_policy_1")
    assert bench.pipeline_override("off_policy_1+rollout_lp") == [
        "trainer.pipeline=off_policy_1",
        "trainer.behaviour_log_probs=rollout",
    ]
    setting = bench.SETTINGS["production"]

    def run(step_s: float, busy: float) -> dict:
        return {
            "step_s": step_s,
            "step_s_each": [step_s] * 3,
            "busy": dict.fromkeys(bench.POOLS, busy),
            "overlap_s": {f"{a}+{b}": 0.0 for a, b in bench.PAIRS},
            "staleness": {"1": 64},
            "samples_valid": 64,
            "driver_pipeline": {},
            "driver_timings": {},
        }

    runs = {"staged": run(8.0, 0.3), "off_policy_1": run(3.4, 0.5), "off_policy_1+rollout_lp": run(2.2, 0.85)}
    s = bench.summarise(setting, runs, {}, 6, 2)
    assert s["step_s_off_policy"] == 3.4 and s["step_s_off_policy_rollout_lp"] == 2.2
    assert s["ratio_off_policy_rollout_lp_to_bound"] == pytest.approx(2.2 / setting.bound_off_policy_s, abs=1e-3)
    assert s["throughput_ratio_off_policy_rollout_lp_vs_staged"] == pytest.approx(8.0 / 2.2, abs=1e-3)
    assert s["busy_off_policy_rollout_lp"] == dict.fromkeys(bench.POOLS, 0.85)
    goals = s["goals"]
    assert goals["off_policy_le_1.15_bound"] is False and goals["off_policy_rollout_lp_le_1.15_bound"] is True
    assert goals["off_policy_rollout_lp_ge_1.8x_staged"] is True
    assert goals["off_policy_rollout_lp_every_pool_ge_80pct_busy"] is True
    assert goals["streaming_le_1.10_bound"] is None  # not run: unmeasured, never estimated
    json.dumps(s)


@pytest.mark.slow
def test_rollout_log_probs_mode_runs_the_real_driver(tmp_path: Path) -> None:
    """The fourth row through the real driver and Ray pools: the simulated engines' log-probs are the behaviour
    log-probs; every step completes and the trained samples are one version behind from step 2 on."""
    bench = _bench()
    setting = bench.Setting("smoke", 0.2, 0.02, 2, 0.05, 8, 0.1, 0.05, prompts=4, n=2, engines=1)
    s = bench.run_setting(setting, ["off_policy_1+rollout_lp"], steps=3, warmup=1, out=tmp_path)
    assert s["unavailable"] == {}
    assert s["step_s_off_policy_rollout_lp"] is not None and s["step_s_off_policy"] is None
    assert s["samples_valid_off_policy_rollout_lp"] == 3 * 8
    assert s["staleness_off_policy_rollout_lp"] == {"0": 8, "1": 16}
    timings = s["driver_timings_off_policy_rollout_lp"]
    assert "old_logprob_s" not in timings and "update_s" in timings
