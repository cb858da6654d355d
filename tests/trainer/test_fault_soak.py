"""The fault soak, shortened: 4 steps, outages scaled to 1-6 s, one SIGTERM + resume, one failed checkpoint write,
one SIGKILLed editor replica and one SIGKILLed rollout engine (replaced by their pools), one SIGKILLed actor worker
(the actor pool restarts every rank from the newest checkpoint and the lost steps are trained again) and one
SIGSTOPped actor worker (a hung rank: ``worker.actor.call_timeout_s`` ends its call, the pool kills it and is restored
the same way; no stopped process is left)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SOAK = Path(__file__).parents[2] / "benchmarks" / "fault_soak.py"


def test_shortened_fault_soak(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("fault_soak", SOAK)
    assert spec is not None and spec.loader is not None
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    result = soak.soak(steps=4, seed=0, outage_scale=0.1, out=tmp_path)
    assert result["steps_completed"] == 4
    assert result["fabricated_scores"] == 0
    assert result["lost_steps_beyond_last_checkpoint"] == 0
    assert result["orphan_processes"] == 0
    assert result["tracebacks"] == 0
    assert result["digests_equal_clean_run"]
    assert result["faults_injected"]["sigterm"] == 1 and result["faults_injected"]["failed_checkpoint_write"] == 1
    assert 143 in result["exit_codes"] and 1 in result["exit_codes"] and result["exit_codes"][-1] == 0
    served = result["faults_served"]
    assert served.get("down", 0) > 0 and result["faults_injected"]["outage_503"] > 0  # an outage met calls
    assert sum(served.get(k, 0) for k in ("server_error", "rate_limit", "hang", "malformed")) > 0
    assert result["faults_injected"]["kill_editor_replica"] == 1
    assert result["faults_injected"]["kill_rollout_engine"] == 1
    assert result["faults_injected"]["kill_actor_worker"] == 1
    assert result["worker_restarts"]["editor"] >= 1 and result["worker_restarts"]["rollout"] >= 1
    assert result["faults_injected"]["hang_actor_worker"] == 1
    assert result["actor_call_timeouts"] == 1 and result["stopped_processes_left"] == 0
    assert result["worker_restarts"]["actor"] == 2  # the kill and the hang
    assert result["not_injected"] == {}
