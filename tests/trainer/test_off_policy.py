"""``trainer.pipeline: off_policy_1`` on the driver without Ray (``pipeline_testkit``): staleness exactly 1 from step
2 and logged; the same data sequence and rewards as ``staged``; the PPO's old log-probs are the behaviour policy's
(computed before the previous update); failures while the background rollout runs end the step cleanly; the stage
spans and ``pipeline/*`` metrics; the config rules of the modes."""

from __future__ import annotations

import json
import logging
import time

import pipeline_testkit
import pytest
import torch
from pipeline_testkit import (
    CountingJudge,
    SlowJudge,
    VersionedActor,
    lp_value,
    make,
    peek_batches,
    prefetch_threads,
    run_steps,
)

from easyr1.config import ConfigValidationError, load_config
from easyr1.sandbox.editor import SandboxEditor
from easyr1.sandbox.generator import write_sandbox_dataset
from easyr1.trainer.grpo import StageFailure
from easyr1.trainer.stage_spans import union_length

OFF = "trainer.pipeline=off_policy_1"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("off-policy")
    write_sandbox_dataset(root / "train", rows=24, seed=3, image_size=32)
    return root


def test_staleness_is_one_from_step_two_and_recorded(data_dir, tmp_path):
    trainer, comps = make(data_dir, tmp_path, OFF)
    rows = run_steps(trainer, comps, 4)
    assert [r["pipeline/staleness_max"] for r in rows] == [0.0, 1.0, 1.0, 1.0]
    assert [r["pipeline/staleness_mean"] for r in rows] == [0.0, 1.0, 1.0, 1.0]
    # The engines' weights that generated each step's batch: v0 for steps 1 and 2, then v(t-2) (step 5's batch was
    # prefetched during step 4).
    gen = comps.rollout.calls
    assert [version for _, version, _ in gen] == [0, 0, 1, 2, 3]
    assert gen[0][2] == "MainThread" and all(name.startswith("easyr1-prefetch") for _, _, name in gen[1:])
    assert prefetch_threads() == []
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["pipeline/staleness_max"] for r in logged] == [0.0, 1.0, 1.0, 1.0]


def test_staged_batches_are_on_policy(data_dir, tmp_path):
    trainer, comps = make(data_dir, tmp_path)
    rows = run_steps(trainer, comps, 3)
    assert [r["pipeline/staleness_max"] for r in rows] == [0.0, 0.0, 0.0]
    assert [version for _, version, _ in comps.rollout.calls] == [0, 1, 2]


def test_same_data_and_rewards_as_staged(data_dir, tmp_path):
    staged, comps_s = make(data_dir, tmp_path / "staged")
    a = run_steps(staged, comps_s, 4)
    off, comps_o = make(data_dir, tmp_path / "off", OFF)
    b = run_steps(off, comps_o, 4)
    assert [r["data/digest"] for r in a] == [r["data/digest"] for r in b]
    assert [r["reward/mean"] for r in a] == [r["reward/mean"] for r in b]
    assert [r["samples/valid"] for r in a] == [r["samples/valid"] for r in b]
    assert [ids for ids, _, _ in comps_s.rollout.calls] == [ids for ids, _, _ in comps_o.rollout.calls[:4]]


def test_old_log_probs_are_the_behaviour_policys(data_dir, tmp_path):
    trainer, comps = make(data_dir, tmp_path, OFF)
    run_steps(trainer, comps, 4)
    actor = comps.actor
    # Update t starts from v(t-1); its batch was generated (and its old log-probs computed) with v(t-2).
    assert [v for v, _ in actor.updates] == [0, 1, 2, 3]
    for t, (_, old) in enumerate(actor.updates, start=1):
        assert torch.all(old == lp_value(max(t - 2, 0))), t
    # Behaviour log-probs of batches 2..4 were computed in the background, before the update that changed v.
    background = [(v, name) for v, name in actor.lp_calls if name.startswith("easyr1-prefetch")]
    assert background == [(v, f"easyr1-prefetch-step-{v + 2}") for v in range(4)]
    # Staged recomputes them with the current weights: step 2's ratio would start at 1, off-policy's does not.
    staged, comps_s = make(data_dir, tmp_path / "staged")
    run_steps(staged, comps_s, 2)
    assert torch.all(comps_s.actor.updates[1][1] == lp_value(1))
    assert not torch.equal(comps_s.actor.updates[1][1], actor.updates[1][1])


def test_no_prefetch_past_the_last_step(data_dir, tmp_path):
    trainer, comps = make(data_dir, tmp_path, OFF, "trainer.max_steps=2")
    result = trainer.fit()
    comps.telemetry.close()
    assert result.step == 2 and len(comps.rollout.calls) == 2
    assert trainer.pipe.pending is None and prefetch_threads() == []


def test_a_background_scoring_failure_is_raised_once_by_its_step_and_ends_cleanly(data_dir, tmp_path):
    """The judge raises for batch 2, scored in the background during step 1: step 1 still trains (its update waits
    for batch 2's log-probs, not its scores); step 2 raises the judge's error once, while step 3's rollout (0.5 s)
    runs: that job is cancelled and joined, makes no actor call after the cancel, and the loader is rewound."""
    judge = CountingJudge()
    trainer, comps = make(data_dir, tmp_path, OFF, judge=judge, rollout_kw={"delay_s": 0.5})
    judge.fail_ids = set(peek_batches(comps.train_loader, 2)[1])
    first = trainer.train_step()
    assert first["step"] == 1 and trainer.step == 1
    position = comps.train_loader.state_dict()  # after rows 2 (prefetched during step 1)
    lp_before = list(comps.actor.lp_calls)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="judge endpoint crashed"):
        trainer.train_step()
    assert time.monotonic() - t0 < 10
    comps.telemetry.close()
    assert prefetch_threads() == []
    assert comps.actor.lp_calls == lp_before  # step 3's behaviour log-probs were never computed
    assert len(comps.rollout.calls) == 3  # step 3's rollout had started
    assert trainer.step == 1 and trainer.pipe.pending is None and not trainer.pipe.in_flight
    assert comps.train_loader.state_dict()["position"] == position["position"]  # rows 3 back in the loader
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1]


def test_an_update_failure_while_the_next_batch_is_scored_ends_cleanly(data_dir, tmp_path):
    """Update 2 dies while batch 3 is edited and judged in the background (judge 0.3 s a call): the step raises the
    actor's error, the scoring thread is joined, batch 3 dropped and the loader rewound to before it."""
    actor = VersionedActor(update_delay_s=0.2)
    actor.fail_update_at = 2
    trainer, comps = make(data_dir, tmp_path, OFF, actor=actor, judge=SlowJudge(0.3))
    trainer.train_step()
    before_rows_3 = comps.train_loader.state_dict()
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="actor worker died"):
        trainer.train_step()
    assert time.monotonic() - t0 < 10
    assert prefetch_threads() == []
    assert trainer.step == 1 and trainer.pipe.pending is None
    assert comps.train_loader.state_dict()["position"] == before_rows_3["position"]
    # The run goes on with batch 3 regenerated (the failed step's batch 2 was consumed).
    row = trainer.train_step()
    trainer.pipe.close()
    comps.telemetry.close()
    assert row["step"] == 2 and prefetch_threads() == []


def test_a_background_rollout_failure_is_raised_once_by_its_step(data_dir, tmp_path):
    trainer, comps = make(data_dir, tmp_path, OFF, rollout_kw={"fail_on_call": 2})
    with pytest.raises(RuntimeError, match="rollout engine lost"):
        trainer.train_step()  # step 2's prefetch failed during step 1: step 1 is not trained
    comps.telemetry.close()
    assert comps.actor.updates == [] and trainer.step == 0 and prefetch_threads() == []
    assert not (tmp_path / "metrics.jsonl").exists() or not (tmp_path / "metrics.jsonl").read_text()


def test_all_failed_judge_with_a_batch_in_flight_checkpoints_it_and_resumes_the_same_data(data_dir, tmp_path):
    clean, comps = make(data_dir, tmp_path / "clean", OFF)
    clean_rows = run_steps(clean, comps, 3)
    digests = [r["data/digest"] for r in clean_rows]
    olds = [old for _, old in comps.actor.updates]

    class OutForBatch2(SlowJudge):  # every judge call of batch 2 (scored in the background in step 1) times out
        fail_ids: set[str] = set()

        def score_batch(self, requests):
            if any(r.key.split("/")[0] in self.fail_ids for r in requests):
                from easyr1.reward.judge.protocol import JudgeResult

                return [JudgeResult.failure("timeout") for _ in requests]
            return super().score_batch(requests)

    trainer, comps = make(data_dir, tmp_path / "run", OFF, "trainer.save_freq=-1", judge=OutForBatch2())
    comps.judge.fail_ids = set(peek_batches(comps.train_loader, 2)[1])
    trainer.train_step()
    with pytest.raises(StageFailure, match="checkpoint of step 1"):
        trainer.train_step()
    comps.telemetry.close()
    assert prefetch_threads() == []
    ckpt = tmp_path / "run" / "checkpoints" / "global_step_1"
    assert (ckpt / "inflight.pt").is_file()
    state = json.loads((ckpt / "driver_state.json").read_text())
    assert state["inflight"]["step"] == 2 and state["inflight"]["version"] == 0
    resumed, comps = make(data_dir, tmp_path / "run", OFF)
    resumed.resume()
    later = run_steps(resumed, comps, 2)
    assert [r["data/digest"] for r in later] == digests[1:]
    # The saved batch holds no scores: re-scored on restore, the same rewards and masks on the sandbox.
    for key in ("reward/mean", "samples/valid"):
        assert [r[key] for r in later] == [r[key] for r in clean_rows[1:]]
    assert [r["pipeline/staleness_max"] for r in later] == [1.0, 1.0]
    for mine, theirs in zip([old for _, old in comps.actor.updates], olds[1:], strict=True):
        assert torch.equal(mine, theirs)


def test_stage_spans_file_and_overlap(data_dir, tmp_path):
    """Rollout 0.3 s, judge 0.3 s per batch: off-policy overlaps the next rollout with this judge, staged does not."""
    kw = {"rollout_kw": {"delay_s": 0.3}}
    staged, comps = make(data_dir, tmp_path / "staged", judge=SlowJudge(0.3), **kw)
    s_rows = run_steps(staged, comps, 3)
    off, comps = make(data_dir, tmp_path / "off", OFF, judge=SlowJudge(0.3), **kw)
    o_rows = run_steps(off, comps, 3)
    for row in s_rows + o_rows:
        for pool in ("rollout", "editor", "judge", "actor"):
            assert 0.0 <= row[f"pipeline/busy/{pool}"] <= 1.0 + 1e-9
        assert row["pipeline/critical_path_s"] <= row["pipeline/wall_s"] + 1e-6
    assert max(r["pipeline/overlap_s"] for r in s_rows) < 0.05
    assert all(r["pipeline/overlap_s"] > 0.2 for r in o_rows)
    assert o_rows[1]["pipeline/wall_s"] < s_rows[1]["pipeline/wall_s"] - 0.15
    lines = [json.loads(x) for x in (tmp_path / "off" / "stage_spans.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3] and all(x["pipeline"] == "off_policy_1" for x in lines)
    stages = {(s["stage"], s["for_step"]) for s in lines[1]["spans"]}
    assert {("rollout", 3), ("old_logprob", 3), ("update", 2), ("sync", 2)} <= stages
    # batch 2 is edited and judged in the background from step 1 on: each span is written with the step it ended in
    early = {(s["stage"], s["for_step"]) for x in lines[:2] for s in x["spans"]}
    assert {("edit", 2), ("judge", 2)} <= early
    for x in lines:  # a call still running at the end of a step is written with the next: it may start before
        assert all(s["start"] <= s["end"] <= x["end"] + 1e-3 for s in x["spans"])
        assert all(x["start"] - 1e-3 <= s["start"] for s in x["spans"] if s["stage"] not in ("edit", "judge"))
        assert x["critical_stage"] in {s["stage"] for s in x["spans"]}


def test_scoring_of_the_next_batch_starts_before_the_update_ends(data_dir, tmp_path):
    """From ``stage_spans.jsonl``: batch t+1's first edit and judge call start before update t ends (they overlap
    the update and the sync), and step t+1 waits for them; every step's spans carry the right ``for_step``."""
    actor = VersionedActor(update_delay_s=0.4)
    trainer, comps = make(data_dir, tmp_path, OFF, actor=actor, judge=SlowJudge(0.1), rollout_kw={"delay_s": 0.1})
    rows = run_steps(trainer, comps, 4)
    spans = [s for x in (tmp_path / "stage_spans.jsonl").read_text().splitlines() for s in json.loads(x)["spans"]]

    def of(stage, step):
        return [s for s in spans if s["stage"] == stage and s["for_step"] == step]

    for t in (2, 3):
        (update,) = of("update", t)
        (rollout,) = of("rollout", t + 1)
        for stage in ("edit", "judge"):
            assert of(stage, t + 1), (stage, t + 1)
            first = min(s["start"] for s in of(stage, t + 1))
            assert rollout["end"] - 1e-3 <= first < update["end"], (stage, t)
        assert min(s["start"] for s in of("edit", t + 1)) < update["start"] + 0.1  # not after the update
        assert max(s["end"] for s in of("judge", t)) <= update["start"] + 1e-3  # step t trains on scored batch t
    assert [r["pipeline/staleness_max"] for r in rows] == [0.0, 1.0, 1.0, 1.0]


def test_pool_counters_go_to_the_step_that_trains_on_the_batch(data_dir, tmp_path):
    """The judge's per-step counters (``drain_metrics``) of batch t+1, scored during step t, are in step t+1's row:
    the same per-step counts as staged, although the scorings run a step early."""
    staged, comps_s = make(data_dir, tmp_path / "staged", "trainer.pipeline=staged", judge=CountingJudge())
    a = run_steps(staged, comps_s, 4)
    actor = VersionedActor(update_delay_s=0.2)
    off, comps = make(data_dir, tmp_path / "off", OFF, actor=actor, judge=CountingJudge(0.05))
    b = run_steps(off, comps, 4)
    key = "judge/requests_drained"
    assert [r[key] for r in a] == [r[key] for r in b]
    assert all(r[key] > 0 for r in b)


def test_config_rules(data_dir, tmp_path):
    with pytest.raises(ConfigValidationError, match="online_filtering"):
        load_config(None, [OFF, "algorithm.online_filtering=true"])
    with pytest.raises(ConfigValidationError, match="pipeline"):
        load_config(None, ["trainer.pipeline=async"])
    assert load_config(None, []).trainer.pipeline in {"staged", "streaming"}  # on-policy unless asked


def test_streaming_without_a_streaming_rollout_runs_staged_with_a_warning(data_dir, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="easyr1.trainer.pipeline"):
        trainer, comps = make(data_dir, tmp_path, "trainer.pipeline=streaming")
    assert "run staged" in caplog.text and not trainer.pipe.streaming
    row = run_steps(trainer, comps, 1)[0]
    assert row["pipeline/staleness_max"] == 0.0


def test_streaming_gives_the_staged_rows(data_dir, tmp_path):
    """With a rollout that streams (chunks out of prompt order) and the reward pipeline's ``score_stream``, the
    driver's rows equal the staged ones: data, rewards, masks, advantages' inputs."""
    staged, comps_s = make(data_dir, tmp_path / "staged")
    a = run_steps(staged, comps_s, 3)
    streaming, comps = make(data_dir, tmp_path / "streaming", "trainer.pipeline=streaming", streams=True)
    assert streaming.pipe.streaming
    b = run_steps(streaming, comps, 3)
    keys = [k for k in a[0] if k.startswith(("data/", "reward/", "samples/"))]
    for x, y in zip(a, b, strict=True):
        assert {k: x[k] for k in keys} == pytest.approx({k: y[k] for k in keys}, nan_ok=True)
        assert y["pipeline/staleness_max"] == 0.0
    for (_, old_a), (_, old_b) in zip(comps_s.actor.updates, comps.actor.updates, strict=True):
        assert torch.equal(old_a, old_b)
    lines = [json.loads(x) for x in (tmp_path / "streaming" / "stage_spans.jsonl").read_text().splitlines()]
    assert all({"rollout", "edit", "judge"} <= {s["stage"] for s in x["spans"]} for x in lines)
    spans = [(s["stage"], s["start"], s["end"]) for x in lines for s in x["spans"]]
    assert len(spans) == len(set(spans))  # reported as they ended and not again from the scored batch


class SlowEditor(SandboxEditor):
    """The sandbox editor, ``DELAY_S`` per ``edit`` call (one call per batch through the in-process stream)."""

    DELAY_S = 0.25

    def edit(self, requests):
        time.sleep(self.DELAY_S)
        return super().edit(requests)


def _busy(spans, pool_stage, start, end):
    return union_length(
        [
            (max(s["start"], start), min(s["end"], end))
            for s in spans
            if s["stage"] == pool_stage and min(s["end"], end) > max(s["start"], start)
        ]
    ) / (end - start)


def test_background_scoring_spans_count_for_the_step_they_ran_in(data_dir, tmp_path, monkeypatch):
    """Batch t+1 is edited (0.25 s) during update t (0.6 s) and judged one call at a time (8 × 0.1 s) past the end of
    step t. Its edit call and the judge calls that ended during step t are in step t's record (reported as each
    ended, not when the scoring returned during step t+1), so step t's ``pipeline/busy/editor`` and ``judge`` are
    what every recorded span says about that window; no span is recorded twice."""
    monkeypatch.setattr(pipeline_testkit, "SandboxEditor", SlowEditor)
    actor = VersionedActor(update_delay_s=0.6)
    trainer, comps = make(
        data_dir,
        tmp_path,
        OFF,
        "judge.max_concurrency=1",
        actor=actor,
        judge=SlowJudge(0.1),
        rollout_kw={"delay_s": 0.1},
    )
    rows = run_steps(trainer, comps, 4)
    lines = [json.loads(x) for x in (tmp_path / "stage_spans.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4]
    every = [s for x in lines for s in x["spans"]]
    keys = [(s["stage"], s["start"], s["end"]) for s in every]
    assert len(keys) == len(set(keys))  # not added again from ScoredBatch.spans
    for step in (2, 3, 4):  # one edit call per batch (the in-process stream, one submit)
        assert len([s for s in every if s["stage"] == "edit" and s["for_step"] == step]) == 1, step
    for k in (2, 3, 4):
        row, x = rows[k - 1], lines[k - 1]
        start, end = x["start"], x["end"]
        background = {s["stage"] for s in x["spans"] if s["for_step"] == k + 1}
        assert {"rollout", "old_logprob", "edit", "judge"} <= background, (k, background)
        if k < 4:  # batch k+1's scoring returned during step k+1 (batch 5's was cancelled by close())
            assert max(s["end"] for s in every if s["for_step"] == k + 1 and s["stage"] == "judge") > end
        for pool, stage in (("editor", "edit"), ("judge", "judge")):
            assert row[f"pipeline/busy/{pool}"] == pytest.approx(x[f"pipeline/busy/{pool}"])
            ended = [s for s in every if s["stage"] == stage and s["end"] <= end]  # in any step's record
            assert row[f"pipeline/busy/{pool}"] == pytest.approx(_busy(ended, stage, start, end), abs=0.02), (k, pool)
        # The edit call of batch k+1 ended well inside step k: the editor's share is the whole truth, and large.
        assert row["pipeline/busy/editor"] == pytest.approx(_busy(every, "edit", start, end), abs=0.02), k
        assert row["pipeline/busy/editor"] > 0.1 and row["pipeline/busy/judge"] > 0.1, (k, row)


def test_versions_survive_select_and_concat(data_dir, tmp_path):
    trainer, comps = make(data_dir, tmp_path, OFF)
    timings: dict[str, float] = {}
    batch, _, _ = trainer._rollout_and_score(None, 1, timings)
    trainer.pipe.settle()
    comps.telemetry.close()
    both = type(batch).concat([batch, batch.select_groups([1])])
    assert both.versions.tolist() == [0] * (len(batch) + 4)
    assert both.staleness(2).tolist() == [2] * len(both)
    assert trainer.pipe.pending is not None and trainer.pipe.pending.old_log_probs.shape[0] == len(batch)
    trainer.pipe.close()
    assert prefetch_threads() == []
    assert isinstance(comps.actor, VersionedActor)
