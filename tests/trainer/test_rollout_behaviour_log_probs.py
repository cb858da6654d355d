"""``trainer.behaviour_log_probs: rollout`` on the driver without Ray (``pipeline_testkit``): the PPO's old
log-probs are the engines' own per-token log-probs of the trained samples and the actor computes none; with
``off_policy_1`` the background job never calls the actor and update t runs while rollout t+1 generates (stage
spans); staleness stays exactly 1; a resume continues with the same data and the same behaviour log-probs; a
response without log-probs fails the step, nothing is filled in."""

from __future__ import annotations

import json
import time

import pytest
import torch
from pipeline_testkit import N, VersionedActor, engine_lp, make, prefetch_threads, run_steps

from easyr1.sandbox.generator import write_sandbox_dataset
from easyr1.trainer.checkpoint import read_inflight
from easyr1.trainer.inflight import MissingRolloutLogProbs

OFF = "trainer.pipeline=off_policy_1"
ROLLOUT = "trainer.behaviour_log_probs=rollout"
LP = {"logprobs": True}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("rollout-lp")
    write_sandbox_dataset(root / "train", rows=24, seed=7, image_size=32)
    return root


def engine_old(version: int, batch_size: int) -> torch.Tensor:
    """The (B, 3) old log-probs of a batch generated with weights ``version`` by :class:`RecordingRollout`: sample k
    of a prompt has 1 + k % 3 tokens, each :func:`engine_lp`; zero beyond."""
    out = torch.zeros(batch_size, 3)
    for i in range(batch_size):
        for j in range(1 + (i % N) % 3):
            out[i, j] = engine_lp(version, j)
    return out


def spans_of(path) -> list[dict]:
    return [s for line in path.read_text().splitlines() for s in json.loads(line)["spans"]]


def one(spans, stage, step) -> dict:
    (span,) = [s for s in spans if s["stage"] == stage and s["for_step"] == step]
    return span


def test_old_log_probs_are_the_engines_and_the_actor_computes_none(data_dir, tmp_path):
    trainer, comps = make(data_dir, tmp_path, OFF, ROLLOUT, rollout_kw=LP)
    rows = run_steps(trainer, comps, 4)
    actor = comps.actor
    assert [r["pipeline/staleness_max"] for r in rows] == [0.0, 1.0, 1.0, 1.0]
    assert [r["pipeline/staleness_mean"] for r in rows] == [0.0, 1.0, 1.0, 1.0]
    # Update t starts from v(t-1); batch t was generated with v(t-2) (steps 1 and 2: v0) and its old log-probs are
    # exactly what the engine returned for those samples, zero-padded like the actor's.
    assert [v for v, _ in actor.updates] == [0, 1, 2, 3]
    for t, (_, old) in enumerate(actor.updates, start=1):
        assert torch.equal(old, engine_old(max(t - 2, 0), old.shape[0])), t
    assert actor.lp_calls == []  # no behaviour log-prob pass on the actor, in any thread
    assert {name for _, name in actor.callers} == {"MainThread"}  # the job threads never call the actor
    assert [v for _, v, _ in comps.rollout.calls] == [0, 0, 1, 2, 3]
    assert prefetch_threads() == []
    # The same data sequence and rewards as with the actor's log-probs.
    ref, comps_a = make(data_dir, tmp_path / "actor", OFF, rollout_kw=LP)
    a = run_steps(ref, comps_a, 4)
    for key in ("data/digest", "reward/mean", "samples/valid"):
        assert [r[key] for r in rows] == [r[key] for r in a], key
    assert comps_a.actor.lp_calls  # the default computes them on the actor


def test_update_overlaps_the_next_rollout(data_dir, tmp_path):
    """Rollout 0.4 s, update 0.4 s: with the engines' log-probs update t runs during rollout t+1 and the sync waits
    for that rollout; with the actor's, update t starts only once rollout t+1 (and its log-probs) ended."""
    kw = {"rollout_kw": {"delay_s": 0.4, "logprobs": True}}
    fast, comps = make(data_dir, tmp_path / "rollout", OFF, ROLLOUT, actor=VersionedActor(update_delay_s=0.4), **kw)
    fast_rows = run_steps(fast, comps, 4)
    slow, comps_s = make(data_dir, tmp_path / "actor", OFF, actor=VersionedActor(update_delay_s=0.4), **kw)
    slow_rows = run_steps(slow, comps_s, 4)
    spans = spans_of(tmp_path / "rollout" / "stage_spans.jsonl")
    actor_spans = spans_of(tmp_path / "actor" / "stage_spans.jsonl")
    for t in (2, 3):
        update, rollout, sync = one(spans, "update", t), one(spans, "rollout", t + 1), one(spans, "sync", t)
        overlap = min(update["end"], rollout["end"]) - max(update["start"], rollout["start"])
        assert overlap > 0.25, (t, update, rollout)
        assert sync["start"] >= rollout["end"] - 1e-3  # the engines are free before the weights move
        assert not [s for s in spans if s["stage"] == "old_logprob"]
        a_update, a_rollout = one(actor_spans, "update", t), one(actor_spans, "rollout", t + 1)
        assert a_update["start"] >= a_rollout["end"] - 1e-3
    # Steady state: about max(R, U) + S per step instead of R + U + S.
    for k in (2, 3):
        assert fast_rows[k]["pipeline/wall_s"] < slow_rows[k]["pipeline/wall_s"] - 0.2, k
    assert [r["pipeline/staleness_max"] for r in fast_rows] == [0.0, 1.0, 1.0, 1.0]


def test_on_policy_modes_use_the_engines_log_probs_too(data_dir, tmp_path):
    trainer, comps = make(data_dir, tmp_path, "trainer.pipeline=staged", ROLLOUT, rollout_kw=LP)
    run_steps(trainer, comps, 3)
    for t, (_, old) in enumerate(comps.actor.updates, start=1):
        assert torch.equal(old, engine_old(t - 1, old.shape[0])), t
    assert comps.actor.lp_calls == []


def test_resume_keeps_the_in_flight_batch_and_its_engine_log_probs(data_dir, tmp_path):
    clean, comps = make(data_dir, tmp_path / "clean", OFF, ROLLOUT, rollout_kw=LP)
    digests = [r["data/digest"] for r in run_steps(clean, comps, 4)]
    olds = [old for _, old in comps.actor.updates]
    first, comps = make(data_dir, tmp_path / "run", OFF, ROLLOUT, "trainer.save_freq=1", rollout_kw=LP)
    run_steps(first, comps, 2)
    ckpt = tmp_path / "run" / "checkpoints" / "global_step_2"
    state = json.loads((ckpt / "driver_state.json").read_text())
    assert state["inflight"]["step"] == 3 and state["inflight"]["version"] == 1
    saved = read_inflight(ckpt)["old_log_probs"]
    assert torch.equal(saved, engine_old(1, saved.shape[0]))  # batch 3's behaviour log-probs: the engine's, v1
    resumed, comps = make(data_dir, tmp_path / "run", OFF, ROLLOUT, "trainer.save_freq=1", rollout_kw=LP)
    resumed.resume()
    assert resumed.pipe.pending is not None and torch.equal(resumed.pipe.pending.old_log_probs, saved)
    later = run_steps(resumed, comps, 2)
    assert [r["data/digest"] for r in later] == digests[2:]
    assert [r["pipeline/staleness_max"] for r in later] == [1.0, 1.0]
    assert comps.rollout.calls[0][1] == 2  # step 3 trained on the saved batch; the first generate is batch 4's
    for mine, theirs in zip([old for _, old in comps.actor.updates], olds[2:], strict=True):
        assert torch.equal(mine, theirs)
    assert comps.actor.lp_calls == [] and prefetch_threads() == []


@pytest.mark.parametrize(("bad", "message"), [("none", "returned no log-probs"), ("short", "0 log-probs for 1")])
def test_a_response_without_log_probs_fails_the_step(data_dir, tmp_path, bad, message):
    """Batch 2 (generated in the background during step 1) comes back without log-probs: step 1 fails at
    ``settle`` with an error naming the option and the sample; nothing is filled in, the job is joined and the
    loader rewound to before batch 2."""
    kw = {"logprobs": True, "no_logprobs_on_call": 2, "bad_logprobs": bad}
    trainer, comps = make(data_dir, tmp_path, OFF, ROLLOUT, rollout_kw=kw)
    before = comps.train_loader.state_dict()
    with pytest.raises(MissingRolloutLogProbs, match=f"trainer.behaviour_log_probs=rollout.*{message}"):
        trainer.train_step()
    comps.telemetry.close()
    assert trainer.step == 0 and trainer.pipe.pending is None and not trainer.pipe.in_flight
    assert prefetch_threads() == []
    assert comps.rollout.engine_version == 0  # no weight sync after the failed settle
    position = comps.train_loader.state_dict()["position"]
    assert position != before["position"] and len(comps.rollout.calls) == 2  # batch 1 consumed, batch 2 rewound
    assert not (tmp_path / "metrics.jsonl").exists() or not (tmp_path / "metrics.jsonl").read_text()


def test_an_on_the_spot_batch_without_log_probs_fails_before_the_update(data_dir, tmp_path):
    kw = {"logprobs": True, "no_logprobs_on_call": 1}
    trainer, comps = make(data_dir, tmp_path, "trainer.pipeline=staged", ROLLOUT, rollout_kw=kw)
    t0 = time.monotonic()
    with pytest.raises(MissingRolloutLogProbs, match="sample 0 of prompt"):
        trainer.train_step()
    comps.telemetry.close()
    assert time.monotonic() - t0 < 10
    assert comps.actor.updates == [] and comps.actor.lp_calls == [] and trainer.step == 0
