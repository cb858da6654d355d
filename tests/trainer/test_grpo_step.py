"""The driver's step without Ray: scripted rollouts, the real sandbox editor/judge/data loader/telemetry, and a
recording actor. Checks accounting, masking, online filtering, token-level estimators, KL-as-reward, stopping on
an all-failed judge, and checkpoint/resume of the data position."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from easyr1.config import load_config
from easyr1.core.types import RolloutOutput
from easyr1.data import build_dataloader, build_policy_prompt
from easyr1.reward.judge.protocol import JudgeResult
from easyr1.sandbox.editor import SandboxEditor
from easyr1.sandbox.generator import write_sandbox_dataset
from easyr1.sandbox.judge import SandboxJudge
from easyr1.telemetry import Telemetry
from easyr1.trainer.components import Components, StepBatches
from easyr1.trainer.grpo import GRPOTrainer, StageFailure

N = 4


class ScriptedRollout:
    """Sample 0 is the row's demonstration, 1 a partial answer, 2 no tags, 3 an instruction the editor ignores.
    Rows whose id is in ``flat`` get four identical answers (zero spread)."""

    def __init__(self, rows_by_id, flat=()):
        self.rows_by_id = rows_by_id
        self.flat = set(flat)
        self.calls = 0

    def generate(self, prompts, sampling):
        self.calls += 1
        out = []
        for prompt in prompts:
            demo = self.rows_by_id[prompt.id]
            first_line = demo.splitlines()
            partial = "\n".join([first_line[0], next(line for line in first_line if line.startswith("<Re_edit>"))])
            texts = [demo, partial, "no tags here", "<CoT>hm</CoT>\n<Re_edit>Sing a song</Re_edit>"]
            if prompt.id in self.flat:
                texts = [demo] * sampling.n
            for k in range(sampling.n):
                out.append(RolloutOutput(prompt.id, k, texts[k % len(texts)], [5, 6, 7][: 1 + k % 3]))
        return out

    def sync_weights(self, actor):
        return {"rollout/sync_s": 0.0}


class RecordingActor:
    def __init__(self):
        self.batches = []
        self.saved = []

    def compute_log_probs(self, batch):
        return torch.full((len(batch), batch.max_response_length), -1.0)

    def compute_ref_log_probs(self, batch):
        return torch.full((len(batch), batch.max_response_length), -1.2)

    def update_policy(self, batch):
        self.batches.append(batch)
        return {"actor/pg_loss": 0.1, "actor/grad_norm": 1.0}

    def save_checkpoint(self, path):
        Path(path, "actor").mkdir(parents=True)
        Path(path, "actor", "weights.json").write_text(json.dumps(len(self.batches)))
        self.saved.append(path)

    def load_checkpoint(self, path):
        self.loaded = path

    def export_hf(self, path):
        Path(path).mkdir(parents=True)


class FailingJudge:
    def score_batch(self, requests):
        return [JudgeResult.failure("timeout") for _ in requests]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("grpo-step")
    write_sandbox_dataset(root / "train", rows=24, seed=3, image_size=32)
    return root


def make(data_dir, out, *overrides, judge=None, flat=()):
    cfg = load_config(
        None,
        [
            f"data.train_files={data_dir / 'train'}",
            "data.rollout_batch_size=2",
            "worker.actor.global_batch_size=2",
            f"worker.rollout.n={N}",
            "worker.actor.micro_batch_size_per_device_for_update=8",
            "worker.image_edit.backend=sandbox",
            "judge.backend=sandbox",
            "worker.reward.strategy=weighted_sum",
            "worker.reward.missing_re_edit=zero_reward",
            f"trainer.output_dir={out}",
            "trainer.logger=[file]",
            "telemetry.prometheus.enabled=false",
            "telemetry.images_per_table=2",
            *overrides,
        ],
    )
    loader = StepBatches(build_dataloader(cfg.data, "train"))
    rows_by_id = {}
    for batch in build_dataloader(cfg.data, "train"):
        rows_by_id.update({r.id: r.metadata["demonstration"] for r in batch})
    actor = RecordingActor()
    telemetry = Telemetry(cfg, out)
    comps = Components(
        cfg, actor, ScriptedRollout(rows_by_id, flat), SandboxEditor(), judge or SandboxJudge(), telemetry, loader, None
    )
    return GRPOTrainer(cfg, out, components=comps), comps


def test_one_step_accounting_and_update(data_dir, tmp_path):
    trainer, comps = make(data_dir, tmp_path)
    metrics = trainer.train_step()
    comps.telemetry.close()
    assert metrics["samples/total"] == 2 * N
    masked = sum(v for k, v in metrics.items() if k.startswith("samples/masked/"))
    assert metrics["samples/valid"] + masked == metrics["samples/total"]
    assert metrics["samples/no_re_edit"] == 2  # one "no tags" answer per prompt: zero reward, counted
    # The sandbox judge keeps no counters: its metrics come from the step's results (JudgeStats.from_results).
    assert metrics["judge/cache_hits"] + metrics["judge/cache_misses"] == 2 * N - 2
    (batch,) = comps.actor.batches
    assert batch.advantages.shape == (2 * N,)
    assert batch.old_log_probs is not None and batch.ref_log_probs is not None
    # The demonstration beats doing nothing in its group.
    adv = batch.advantages.view(2, N)
    assert (adv[:, 0] > adv[:, 2]).all()
    assert abs(float(adv.sum())) < 1e-4
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["reward/mean"] == pytest.approx(metrics["reward/mean"])
    assert (tmp_path / "samples").is_dir()


def test_online_filtering_drops_flat_groups_and_refills(data_dir, tmp_path):
    flat_ids = set()  # the first batch's rows get identical answers
    trainer, comps = make(data_dir, tmp_path, "algorithm.online_filtering=true", "algorithm.max_try_make_batch=3")
    for batch in build_dataloader(comps.cfg.data, "train"):
        flat_ids.update(r.id for r in batch)
        break
    comps.rollout.flat = flat_ids
    metrics = trainer.train_step()
    comps.telemetry.close()
    assert comps.rollout.calls == 2  # the first round was all flat: refilled once
    assert metrics["filter/dropped_low_std"] >= 2
    assert metrics["samples/total"] == 2 * N


def test_token_level_estimator_and_kl_reward(data_dir, tmp_path):
    trainer, comps = make(
        data_dir, tmp_path, "algorithm.adv_estimator=reinforce_plus_plus_baseline", "algorithm.use_kl_loss=false"
    )
    metrics = trainer.train_step()
    comps.telemetry.close()
    (batch,) = comps.actor.batches
    assert batch.advantages.dim() == 2 and batch.advantages.shape[0] == 2 * N
    assert "actor/reward_kl" in metrics and math.isfinite(metrics["actor/reward_kl"])


class FailingEditor:
    def edit(self, requests):
        from easyr1.core.types import EditResult

        return [EditResult.failure("no_replicas") for _ in requests]


@pytest.mark.parametrize(
    ("judge", "editor", "reason"),
    [(FailingJudge(), None, "judge:timeout"), (None, FailingEditor(), "edit:no_replicas")],
)
def test_all_failed_attempts_stop_the_run_after_logging(data_dir, tmp_path, judge, editor, reason):
    trainer, comps = make(data_dir, tmp_path, "trainer.save_freq=1", judge=judge)
    if editor is not None:
        comps.editor = editor
        trainer.scorer.editor = editor
    with pytest.raises(StageFailure, match="every edit/judge attempt failed"):
        trainer.train_step()
    comps.telemetry.close()
    assert comps.actor.batches == [] and comps.actor.saved == []
    (row,) = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert row[f"samples/masked/{reason}"] == 6 and row["samples/valid"] == 0


def test_checkpoint_resume_continues_the_data_order(data_dir, tmp_path):
    full, comps = make(data_dir, tmp_path / "full", "trainer.save_freq=1")
    digests = [full.train_step()["data/digest"] for _ in range(3)]
    comps.telemetry.close()
    part, comps = make(data_dir, tmp_path / "part", "trainer.save_freq=1")
    part.train_step()
    comps.telemetry.close()
    resumed, comps = make(data_dir, tmp_path / "part", "trainer.save_freq=1")
    resumed.resume()
    assert resumed.step == 1 and comps.actor.loaded.endswith("global_step_1")
    later = [resumed.train_step()["data/digest"] for _ in range(2)]
    comps.telemetry.close()
    assert later == digests[1:]


def test_model_only_checkpoints_are_skipped_by_auto_and_refused_explicitly(data_dir, tmp_path):
    trainer, comps = make(data_dir, tmp_path, "trainer.save_freq=1", "trainer.save_model_only=true")
    trainer.train_step()
    comps.telemetry.close()
    ckpt = tmp_path / "checkpoints" / "global_step_1"
    assert (ckpt / "model").is_dir()
    again, comps = make(
        data_dir, tmp_path / "other", "trainer.save_freq=1", f"trainer.save_checkpoint_path={tmp_path / 'checkpoints'}"
    )
    again.resume()  # auto: nothing resumable, a fresh start (the model-only folder is not a resume point)
    assert again.step == 0
    comps.telemetry.close()
    explicit, comps = make(data_dir, tmp_path / "third", f"trainer.load_checkpoint_path={ckpt}")
    with pytest.raises(StageFailure, match="model-only"):
        explicit.resume()
    comps.telemetry.close()


def test_later_checkpoints_of_another_run_are_refused(data_dir, tmp_path):
    trainer, comps = make(data_dir, tmp_path, "trainer.save_freq=1")
    trainer.train_step()
    trainer.train_step()
    comps.telemetry.close()
    fresh, comps = make(data_dir, tmp_path, "trainer.resume=disable")
    with pytest.raises(StageFailure, match="later steps"):
        fresh.resume()
    comps.telemetry.close()


def test_components_prompt_builder(data_dir, tmp_path):
    _, comps = make(data_dir, tmp_path)
    row = comps.train_loader.next_batch()[0]
    assert comps.build_prompt(row).messages == build_policy_prompt(row).messages
    comps.telemetry.close()


def test_fit_stops_between_steps_and_checkpoints_the_last_completed_step(data_dir, tmp_path):
    import threading

    trainer, comps = make(data_dir, tmp_path, "trainer.max_steps=5", "trainer.save_freq=-1")
    stop = threading.Event()
    step_once = trainer.train_step

    def step_then_signal():  # the signal arrives while step 2 runs: step 2 finishes, step 3 never starts
        metrics = step_once()
        if trainer.step == 2:
            stop.set()
        return metrics

    trainer.train_step = step_then_signal
    result = trainer.fit(stop=stop)
    comps.telemetry.close()
    assert result.stopped and result.step == 2 and result.steps_completed == 2 == len(result)
    assert len(comps.actor.batches) == 2
    assert result.checkpoint == tmp_path / "checkpoints" / "global_step_2"
    assert (result.checkpoint / "COMPLETE").is_file()


def test_fit_without_stop_runs_to_the_end_and_saves_once(data_dir, tmp_path):
    trainer, comps = make(data_dir, tmp_path, "trainer.max_steps=2", "trainer.save_freq=2")
    result = trainer.fit(stop=None)
    comps.telemetry.close()
    assert not result.stopped and result.step == 2 and [m["step"] for m in result] == [1, 2]
    assert len(comps.actor.saved) == 1  # saved by the schedule at step 2, not again at the end
    assert result.checkpoint == tmp_path / "checkpoints" / "global_step_2"


def test_a_stop_by_failed_stage_checkpoints_the_last_completed_step_and_resumes_its_data(data_dir, tmp_path):
    """Issue 21: the judge is out for longer than the budget at step 2 of a run that saves no checkpoints on its
    own; the run stops with a checkpoint of step 1 whose loader/RNG state is from *before* step 2, so the resumed
    run trains step 2 on the same rows as an uninterrupted run."""
    clean, comps = make(data_dir, tmp_path / "clean", "trainer.save_freq=-1")
    digests = [clean.train_step()["data/digest"] for _ in range(2)]
    comps.telemetry.close()
    trainer, comps = make(data_dir, tmp_path / "run", "trainer.save_freq=-1")
    trainer.train_step()
    assert comps.actor.saved == []
    trainer.scorer.judge = comps.judge = FailingJudge()
    with pytest.raises(StageFailure, match=r"every edit/judge attempt failed.*checkpoint of step 1"):
        trainer.train_step()
    comps.telemetry.close()
    assert [Path(p).name for p in comps.actor.saved] == ["global_step_1.tmp-" + str(os.getpid())]
    resumed, comps = make(data_dir, tmp_path / "run", "trainer.save_freq=-1")
    resumed.resume()
    assert resumed.step == 1
    assert resumed.train_step()["data/digest"] == digests[1]
    comps.telemetry.close()


def test_a_failed_first_step_has_nothing_to_checkpoint(data_dir, tmp_path):
    trainer, comps = make(data_dir, tmp_path, "trainer.save_freq=-1", judge=FailingJudge())
    with pytest.raises(StageFailure, match="no completed step to checkpoint"):
        trainer.train_step()
    comps.telemetry.close()
    assert comps.actor.saved == [] and not (tmp_path / "checkpoints").exists()
