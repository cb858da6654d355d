"""Checkpoints of ``off_policy_1`` carry the in-flight batch: a run stopped after a checkpoint and resumed by a new
trainer (what follows a kill -9) trains on the same data with the same behaviour log-probs as an uninterrupted run;
an actor restart (``ActorRecovery``) restores the in-flight batch of its checkpoint; switching modes on resume drops
or regenerates it consistently."""

from __future__ import annotations

import json

import pytest
import torch
from pipeline_testkit import VersionedActor, make, prefetch_threads, run_steps

from easyr1.sandbox.generator import write_sandbox_dataset

OFF = "trainer.pipeline=off_policy_1"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline-resume")
    write_sandbox_dataset(root / "train", rows=24, seed=5, image_size=32)
    return root


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory):
    trainer, comps = make(data_dir, tmp_path_factory.mktemp("clean"), OFF)
    rows = run_steps(trainer, comps, 4)
    return [r["data/digest"] for r in rows], [old for _, old in comps.actor.updates]


def test_resume_continues_with_the_same_data_and_behaviour_log_probs(data_dir, tmp_path, uninterrupted):
    digests, olds = uninterrupted
    first, comps = make(data_dir, tmp_path, OFF, "trainer.save_freq=1")
    run_steps(first, comps, 2)
    ckpt = tmp_path / "checkpoints" / "global_step_2"
    state = json.loads((ckpt / "driver_state.json").read_text())
    assert state["inflight"]["step"] == 3 and state["inflight"]["version"] == 1
    assert "inflight.pt" in json.loads((ckpt / "MANIFEST.json").read_text())["files"]
    calls_before = len(comps.rollout.calls)
    # A new process: nothing of the first trainer survives but the checkpoint folder.
    resumed, comps = make(data_dir, tmp_path, OFF, "trainer.save_freq=1")
    resumed.resume()
    assert resumed.step == 2 and resumed.pipe.pending is not None and resumed.pipe.pending.step == 3
    later = run_steps(resumed, comps, 2)
    assert [r["data/digest"] for r in later] == digests[2:]
    assert [r["pipeline/staleness_max"] for r in later] == [1.0, 1.0]
    # Step 3 trained on the saved batch (not regenerated): the first generate call of the new trainer is step 4's.
    assert comps.rollout.calls[0][1] == 2 and calls_before == 3
    for mine, theirs in zip([old for _, old in comps.actor.updates], olds[2:], strict=True):
        assert torch.equal(mine, theirs)
    assert prefetch_threads() == []


def test_staged_resume_of_an_off_policy_checkpoint_regenerates_the_in_flight_batch(data_dir, tmp_path):
    staged, comps = make(data_dir, tmp_path / "staged")
    digests = [r["data/digest"] for r in run_steps(staged, comps, 4)]
    first, comps = make(data_dir, tmp_path / "run", OFF, "trainer.save_freq=1")
    run_steps(first, comps, 2)
    resumed, comps = make(data_dir, tmp_path / "run", "trainer.save_freq=1")
    resumed.resume()
    assert resumed.pipe.pending is None
    later = run_steps(resumed, comps, 2)
    assert [r["data/digest"] for r in later] == digests[2:]
    assert [r["pipeline/staleness_max"] for r in later] == [0.0, 0.0]
    assert [v for _, v, _ in comps.rollout.calls] == [2, 3]  # regenerated with the restored weights


def test_off_policy_resume_of_a_staged_checkpoint_starts_on_policy(data_dir, tmp_path, uninterrupted):
    digests, _ = uninterrupted
    first, comps = make(data_dir, tmp_path, "trainer.save_freq=1")
    run_steps(first, comps, 2)
    resumed, comps = make(data_dir, tmp_path, OFF, "trainer.save_freq=1")
    resumed.resume()
    later = run_steps(resumed, comps, 2)
    assert [r["data/digest"] for r in later] == digests[2:]
    assert [r["pipeline/staleness_max"] for r in later] == [0.0, 1.0]


class RestartingActor(VersionedActor):
    """An actor pool whose update at ``fail_update_at`` loses a worker; ``restart_workers`` brings it back."""

    def __init__(self):
        super().__init__()
        self.lost = False
        self.restarts = 0

    def update_policy(self, batch):
        try:
            return super().update_policy(batch)
        except RuntimeError:
            self.lost = True
            raise

    def lost_workers(self, timeout_s: float = 60.0):
        return {1: "SIGKILL"} if self.lost else {}

    def restart_workers(self, rank, cause):
        self.lost, self.version = False, 0
        self.restarts += 1

    def drain_metrics(self):
        return {"actor/restarts": float(self.restarts)}


def test_actor_restart_restores_the_in_flight_batch_of_its_checkpoint(data_dir, tmp_path, uninterrupted):
    digests, olds = uninterrupted
    actor = RestartingActor()
    actor.fail_update_at = 4  # the update of step 4 dies; step 3 (checkpoint of step 3 holds batch 4) is newest
    trainer, comps = make(data_dir, tmp_path, OFF, "trainer.save_freq=1", "trainer.max_steps=4", actor=actor)
    result = trainer.fit()
    comps.telemetry.close()
    assert actor.restarts == 1 and result.step == 4
    assert [r["data/digest"] for r in result] == digests
    # Updates: 1, 2, 3, the failed 4 (not recorded), 4 again with the restored behaviour log-probs.
    assert [v for v, _ in actor.updates] == [0, 1, 2, 3]
    for mine, theirs in zip([old for _, old in actor.updates], olds, strict=True):
        assert torch.equal(mine, theirs)
    assert prefetch_threads() == []
