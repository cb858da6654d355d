"""The GRPO driver: one object that owns the loop and talks to the pools through their small interfaces."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from easyr1.actor.settings import needs_reference
from easyr1.algorithms import (
    compute_advantage,
    effective_sample_mask,
    filter_groups,
    get_advantage_estimator,
    kl_reward_penalty,
    make_kl_controller,
)
from easyr1.config import EasyR1Config, dump_yaml
from easyr1.core.seeds import derive_seed
from easyr1.core.types import EditSample, SamplingParams
from easyr1.editing.protocol import DrainsMetrics
from easyr1.reward import parse_response
from easyr1.reward.judge.protocol import JudgeResult
from easyr1.reward.judge.stats import JudgeStats
from easyr1.rollout.sampling import sampling_params

from .checkpoint import CheckpointManager, DriverState, write_inflight
from .components import Components, training_steps
from .inflight import rollout_log_probs
from .pipeline import StepPipeline
from .recovery import ActorRecovery
from .rng import capture_rng, restore_rng
from .scoring import RewardPipeline, ScoredBatch
from .step_batch import StepBatch
from .step_metrics import sample_digest, training_row, validation_row

logger = logging.getLogger(__name__)


class StageFailure(RuntimeError):
    """A stage failed in a way that cannot be masked (e.g. every judge call of a step failed)."""


class FitResult(list):
    """What :meth:`GRPOTrainer.fit` returns: this invocation's per-step metrics (a list, one dict per step) plus
    how the run ended — ``stopped`` (the ``stop`` event ended it early), ``step`` (the last completed step) and
    ``checkpoint`` (the newest complete checkpoint once fit returns, ``None`` when there is none)."""

    def __init__(self, history: list[dict[str, float]], *, step: int, stopped: bool, checkpoint: Path | None):
        super().__init__(history)
        self.step = step
        self.stopped = stopped
        self.checkpoint = checkpoint

    @property
    def steps_completed(self) -> int:
        """Steps this invocation completed (``step`` counts those of a resumed run too)."""
        return len(self)


@contextmanager
def timed(timings: dict[str, float], name: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


class GRPOTrainer:
    """Runs ``easyr1 train``: rollout → parse/format → edit → judge → combine/mask → advantages → update → sync."""

    def __init__(self, cfg: EasyR1Config, run_dir: Path, *, components: Components):
        self.cfg = cfg
        self.run_dir = run_dir
        self.c = components
        ckpt_root = Path(cfg.trainer.save_checkpoint_path or run_dir / "checkpoints")
        self.checkpoints = CheckpointManager(ckpt_root, cfg.trainer.save_limit)
        self.scorer = RewardPipeline(cfg, components.editor, components.judge)
        self.pipe = StepPipeline(self, run_dir)
        """``trainer.pipeline``: where each step's responses come from, the off-policy prefetch, stage spans."""
        self.step = 0
        self.best_val = -math.inf
        algo = cfg.algorithm
        self.kl_ctrl = make_kl_controller(algo.kl_type, algo.kl_coef, algo.kl_target, algo.kl_horizon)
        self._last_checkpoint_s: float | None = None
        self._carried: dict[str, float] = {}  # restart counts of a sync outside a step, added to the next row
        self.recovery = ActorRecovery(self)
        """Brings a lost actor pool back from the newest checkpoint (``worker.actor.max_restarts``)."""

    # ------------------------------------------------------------------ set-up / resume
    def resume(self) -> None:
        tcfg = self.cfg.trainer
        self.checkpoints.remove_partial()
        explicit = Path(tcfg.load_checkpoint_path) if tcfg.load_checkpoint_path else None
        path = explicit if explicit is not None else self.newest_resumable() if tcfg.resume == "auto" else None
        if path is not None and _model_only(path):
            raise StageFailure(
                f"{path} is a model-only checkpoint (trainer.save_model_only): it cannot resume a run. Start a new run "
                f"from its weights with worker.actor.model.model_path={path / 'model'}"
            )
        state = None if path is None else DriverState.read(path)
        start = 0 if state is None else state.step
        newer = [c for c in self.checkpoints.newer_than(start) if not _model_only(c.path)]
        if newer:
            raise StageFailure(
                f"{self.checkpoints.root} holds checkpoints of later steps ({[c.step for c in newer]}) than this run "
                f"starts from ({start}); use another trainer.output_dir / save_checkpoint_path, or resume: auto"
            )
        if path is None or state is None:
            return
        self.restore(path, state)
        logger.info("resumed from %s at step %d", path, self.step)

    def newest_resumable(self) -> Path | None:
        """The newest complete checkpoint that can resume the run (not model-only, files matching its manifest's
        checksums; a damaged newest one is skipped with a warning), or ``None``."""
        full = [c for c in self.checkpoints.complete_checkpoints() if not _model_only(c.path)]
        if len(full) < len(self.checkpoints.complete_checkpoints()):
            logger.warning("model-only checkpoints (trainer.save_model_only) cannot resume a run; they are skipped")
        while full and (problem := CheckpointManager.verify(full[-1].path)) is not None:
            logger.warning(
                "newest checkpoint %s is damaged (%s); falling back to the previous one", full[-1].path, problem
            )
            full.pop()
        return full[-1].path if full else None

    def restore(self, path: Path | None, state: DriverState) -> None:
        """Load checkpoint ``path`` into the actor and rewind the driver to ``state`` (step, data position, best
        validation mean, KL coefficient, RNG, an off-policy in-flight batch); then sync the weights into the rollout
        engines. Used by :meth:`resume` and by the restart of a lost actor pool (``trainer/recovery.py``); ``path``
        is ``None`` for the run's start (a restart before the first checkpoint: the fresh ranks hold the start)."""
        self.pipe.abandon()
        if path is not None:
            self.c.actor.load_checkpoint(str(path))
        self.pipe.restore(path, state)
        self.step = state.step
        self.best_val = -math.inf if state.best_val is None else state.best_val
        if state.kl_coef is not None:
            self.kl_ctrl.value = state.kl_coef
        restore_rng(state.rng)
        for key, value in (self.c.rollout.sync_weights(self.c.actor) or {}).items():
            if key.endswith("/restarts"):  # engines replaced by this sync: counted in the next step's row
                self._carried[key] = self._carried.get(key, 0.0) + value

    # ------------------------------------------------------------------ the step
    def _sampling(self, step: int, attempt: int = 0, validation: bool = False) -> SamplingParams:
        seed = derive_seed(self.cfg.worker.rollout.seed, "val" if validation else "train", step, attempt)
        return sampling_params(self.cfg, validation=validation, seed=seed)

    def _rollout_and_score(
        self, rows: list[EditSample] | None, step: int, timings: dict[str, float], *, attempt=0, validation=False
    ) -> tuple[StepBatch, ScoredBatch, list[str]]:
        """Responses for ``rows`` (``None``: the step's first batch, prefetched or read now), scored; and the ids of
        the rows used (``trainer/pipeline.py``)."""
        return self.pipe.rollout_and_score(rows, step, timings, attempt=attempt, validation=validation)

    def _collect(self, step: int, timings: dict[str, float]):
        """Rollout + score, with optional online filtering that refills the batch up to max_try_make_batch.

        Returns the kept groups (a :class:`StepBatch`), the ids of every row consumed, filter counts, every attempt's
        scored batch (so failures of dropped groups are still counted) and, when every edit/judge attempt of an
        attempt failed and ``trainer.abort_on_all_failed`` is on, that attempt's scored batch (its groups are then
        the ones returned)."""
        algo = self.cfg.algorithm
        want = self.cfg.data.rollout_batch_size
        kept: list[StepBatch] = []
        attempts: list[ScoredBatch] = []
        consumed_ids: list[str] = []
        filter_counts: Counter = Counter()
        for attempt in range(1 + (algo.max_try_make_batch if algo.online_filtering else 0)):
            rows = self.c.train_loader.next_batch() if attempt else None  # None: the prefetched batch, if any
            batch, scored, ids = self._rollout_and_score(rows, step, timings, attempt=attempt)
            consumed_ids.extend(ids)
            attempts.append(scored)
            if scored.all_attempts_failed() and self.cfg.trainer.abort_on_all_failed:
                return batch, consumed_ids, filter_counts, attempts, scored
            if algo.online_filtering:
                key_scores = {"overall": batch.rewards, "format": batch.format_scores}.get(algo.filter_key)
                if key_scores is None:
                    key_scores = batch.dimension_scores[algo.filter_key]
                result = filter_groups(
                    key_scores,
                    batch.group,
                    batch.valid & torch.isfinite(key_scores),  # zero-reward samples have no judge dimensions
                    std_threshold=algo.filter_std_threshold,
                    low=algo.filter_low,
                    high=algo.filter_high,
                )
                batch = batch.select_groups(result.group_keep)
                filter_counts.update({k: int(v) for k, v in result.as_metrics().items()})
            kept.append(batch)
            if sum(b.num_groups for b in kept) >= want:
                break
            logger.info(
                "online filtering kept %d/%d groups after attempt %d",
                sum(b.num_groups for b in kept),
                want,
                attempt + 1,
            )
        return StepBatch.concat(kept).first_groups(want), consumed_ids, filter_counts, attempts, None

    def train_step(self) -> dict[str, float]:
        step = self.step + 1
        timings: dict[str, float] = {}
        t_step = time.perf_counter()
        before = self._driver_state(self.step)  # what resumes this step, should it fail
        window = time.time()
        try:
            return self._train_step(step, timings, t_step, window, before)
        except BaseException:
            self.pipe.drop_later()  # the background rollout is joined and its batch dropped, never left running
            self.pipe.spans.discard()
            raise

    def _train_step(
        self, step: int, timings: dict[str, float], t_step: float, window: float, before: DriverState
    ) -> dict[str, float]:
        batch, consumed_ids, filter_counts, attempts, failed = self._collect(step, timings)
        if not self.pipe.overlaps_update:  # the actor and the engines are free once it is settled
            self.pipe.await_job(step)
        if not len(batch):
            raise StageFailure(
                f"step {step}: online filtering kept no group after {self.cfg.algorithm.max_try_make_batch} refills"
            )
        counts: Counter = Counter()
        for scored in attempts:
            counts.update(scored.counts)
        masked = batch.masked_by_reason()  # the kept groups' share of each attempt's reasons
        effective = effective_sample_mask(self.cfg.algorithm.adv_estimator, batch.group, batch.valid)
        masked["group:too_few_valid"] = int((batch.valid & ~effective).sum())
        # A step whose every edit/judge attempt failed is not trained on: its row is logged, then the run stops.
        actor_metrics = {} if failed is not None else self._update(batch, effective, timings)
        self.pipe.await_job(step)  # engine log-probs: rollout t+1 ran beside the update (if no sync settled it)
        for key, value in self._carried.items():
            actor_metrics[key] = actor_metrics.get(key, 0.0) + value
        self._carried = {}
        judged = [res for sb in attempts for res in sb.judge_results if res is not None]
        # The previous step's checkpoint time: this step is logged *before* its own checkpoint is written, so a
        # kill during the save never loses the step's metrics.
        if self._last_checkpoint_s is not None:
            timings["checkpoint"] = self._last_checkpoint_s
        timings["step"] = time.perf_counter() - t_step
        pipeline = self.pipe.spans.close_step(step, window, time.time(), mode=self.pipe.mode)
        staleness = batch.staleness(self.step)
        if staleness is not None and len(staleness):
            pipeline["pipeline/staleness_mean"] = float(staleness.double().mean())
            pipeline["pipeline/staleness_max"] = float(staleness.max())
        metrics = training_row(
            step,
            sample_digest(consumed_ids),
            batch,
            effective,
            masked,
            counts,
            filter_counts=filter_counts,
            loader_metrics=self.c.train_loader.metrics(),
            pool_metrics={**self._drain_pool_metrics(judged), **self.recovery.metrics()},
            actor_metrics=actor_metrics,
            timings=timings,
            pipeline_metrics=pipeline,
        )
        self.c.telemetry.log_step(step, metrics)
        if failed is not None:  # stop: a step where every edit or judge call failed cannot be masked away
            saved = self._save_before_stop(before)
            raise StageFailure(
                f"step {step}: every edit/judge attempt failed ({dict(failed.masked_by_reason())}); stopping; "
                + (f"checkpoint of step {before.step}: {saved}" if saved else "no completed step to checkpoint")
            )
        self.step = step
        self.c.telemetry.observe_rewards(
            {
                "overall": batch.rewards[effective].tolist(),
                "format": batch.format_scores.tolist(),
                **batch.finite_dimension_scores(),
            }
        )
        self.c.telemetry.observe_judge_latency([res.latency_s for res in judged if not res.cached])
        self.c.telemetry.observe_edit_latency([t for sb in attempts for t in sb.edit_latencies])
        if self.c.telemetry.should_log_samples(step):
            self.c.telemetry.log_samples(step, self._sample_rows(batch, self.cfg.telemetry.images_per_table))
        start = time.perf_counter()
        if self._maybe_save(step):
            self._last_checkpoint_s = time.perf_counter() - start
        return metrics

    def _save_before_stop(self, before: DriverState) -> Path | None:
        """The last completed step's checkpoint (written now unless it exists), so that a run stopped by a failed
        stage resumes where it stopped; ``before`` holds the loader and RNG state from before the failed step."""
        if before.step == 0:
            return None
        latest = self.checkpoints.latest()
        if latest is not None and latest.step == before.step:
            return latest.path
        return self._write_checkpoint(before)

    def _update(self, step_batch: StepBatch, effective: torch.Tensor, timings: dict[str, float]) -> dict[str, float]:
        """Old/ref log-probs (old: stored with the batch, the engines' own, or the actor's now), advantages, PPO update
        and weight sync (rollout t+1 may run until then: ``pipe.overlaps_update``); returns actor metrics."""
        algo = self.cfg.algorithm
        if int(effective.sum()) == 0:
            logger.warning(
                "step %d: no sample can contribute (all masked or lone valid samples); update skipped", self.step + 1
            )
            return {}
        batch = self.c.make_actor_batch(step_batch.prompts, step_batch.outputs, effective)
        width = batch.max_response_length
        lengths = torch.tensor([len(r) for r in batch.responses])
        response_mask = torch.arange(width)[None, :] < lengths[:, None]
        if step_batch.old_log_probs is not None:  # off-policy: the behaviour policy's, computed before update t-1
            batch = batch.with_fields(old_log_probs=batch.token_tensor(step_batch.old_log_probs, width))
        elif self.pipe.rollout_lp:  # trainer.behaviour_log_probs=rollout: the engines' own, no actor pass
            batch = batch.with_fields(old_log_probs=rollout_log_probs(step_batch.outputs, width))
        else:
            with timed(timings, "old_logprob"), self.pipe.spans.span("old_logprob", self.step + 1, len(batch)):
                batch = batch.with_fields(old_log_probs=self.c.actor.compute_log_probs(batch))
        need_ref = needs_reference(self.cfg)
        kl_reward = need_ref and not algo.use_kl_loss
        if need_ref:
            with timed(timings, "ref_logprob"), self.pipe.spans.span("ref_logprob", self.step + 1, len(batch)):
                batch = batch.with_fields(ref_log_probs=self.c.actor.compute_ref_log_probs(batch))
        opts: dict[str, Any] = {"eps": algo.norm_eps, "gamma": algo.gamma}
        metrics: dict[str, float] = {}
        if get_advantage_estimator(algo.adv_estimator).token_level or kl_reward:
            opts["response_mask"] = response_mask
        if kl_reward:
            token_rewards, current_kl = kl_reward_penalty(
                batch.old_log_probs,
                batch.ref_log_probs,
                response_mask & effective[:, None],
                algo.kl_penalty,
                self.kl_ctrl.value,
            )
            opts["token_rewards"] = token_rewards
            metrics["actor/reward_kl"] = float(current_kl)
            metrics["actor/kl_coef"] = float(self.kl_ctrl.value)
            self.kl_ctrl.update(float(current_kl), len(batch))
        advantages = compute_advantage(
            algo.adv_estimator, step_batch.rewards, step_batch.group, step_batch.valid, **opts
        )
        batch = batch.with_fields(advantages=advantages.float())
        with timed(timings, "update"), self.pipe.spans.span("update", self.step + 1, len(batch)):
            metrics.update(self.c.actor.update_policy(batch))
        self.pipe.await_job(self.step + 1)  # engine log-probs: rollout t+1 ran beside the update; engines free now
        with timed(timings, "sync"), self.pipe.spans.span("sync", self.step + 1):
            metrics.update(self.c.rollout.sync_weights(self.c.actor) or {})
        return metrics

    def _drain_pool_metrics(self, judged: list[JudgeResult]) -> dict[str, float]:
        """The editor pool's and the judge's counters since the last call (per step, not running totals)."""
        metrics = self.pipe.drain_pools()  # off_policy_1: drained when this step's batch was scored
        if not isinstance(self.c.judge, DrainsMetrics) and judged:
            j = self.cfg.judge
            stats = JudgeStats.from_results(judged, j.price_per_1k_prompt_tokens, j.price_per_1k_completion_tokens)
            metrics.update(stats.to_metrics())
        return metrics

    def _sample_rows(self, batch: StepBatch, limit: int) -> list[dict[str, Any]]:
        rows = []
        for j in range(min(limit, len(batch))):
            row, res, text = batch.rows[j], batch.judge_results[j], batch.outputs[j].text
            rows.append(
                {
                    "id": row.id,
                    "instruction": row.instruction,
                    "source": row.source_image,
                    "preliminary": row.edited_image,
                    "final": batch.final_images[j],
                    "response": text,
                    "re_edit": batch.re_edits[j] or "",
                    "cot": "\n".join(parse_response(text).cot),
                    "scores": dict(res.scores) if res is not None and res.scores else {},
                    "format": float(batch.format_scores[j]),
                    "reward": float(batch.rewards[j]),
                    "status": batch.reasons[j] or "ok",
                }
            )
        return rows

    # ------------------------------------------------------------------ validation / checkpoints
    def validate(self) -> dict[str, float]:
        loader = self.c.val_loader
        if loader is None:
            return {}
        timings: dict[str, float] = {}
        batches: list[StepBatch] = []
        ids: list[str] = []
        for rows in loader.iter_batches():
            batch, _, _ = self._rollout_and_score(rows, self.step, timings, validation=True)
            batches.append(batch)
            ids.extend(row.id for row in rows)
        merged = StepBatch.concat(batches)
        # Validation's judge calls, edits and engine restarts are counted here, not in the next training step.
        pools = self._drain_pool_metrics([])
        if isinstance(self.c.rollout, DrainsMetrics):
            pools.update(self.c.rollout.drain_metrics())
        metrics = validation_row(sample_digest(ids), merged, timings, pools)
        self.c.telemetry.log_step(self.step, metrics)
        self.c.telemetry.log_samples(
            self.step, self._sample_rows(merged, self.cfg.trainer.val_generations_to_log), prefix="val"
        )
        if math.isfinite(metrics["val/reward/mean"]):
            self.best_val = max(self.best_val, metrics["val/reward/mean"])
        return metrics

    def _driver_state(self, step: int) -> DriverState:
        inflight, payload = self.pipe.checkpoint_state()
        return DriverState(
            step=step,
            loader=self.c.train_loader.state_dict(),
            best_val=self.best_val if math.isfinite(self.best_val) else None,
            kl_coef=float(self.kl_ctrl.value),
            model_only=self.cfg.trainer.save_model_only,
            rng=capture_rng(),
            inflight=inflight,
            inflight_payload=payload,
        )

    def _maybe_save(self, step: int, force: bool = False) -> bool:
        """Write a checkpoint when the schedule (or ``force``) says so; returns whether one was written."""
        freq = self.cfg.trainer.save_freq
        if not force and (freq == -1 or step % freq):
            return False
        self._write_checkpoint(self._driver_state(step))
        return True

    def _write_checkpoint(self, state: DriverState) -> Path:
        def write_actor(folder: Path) -> None:
            if state.model_only:
                self.c.actor.export_hf(str(folder / "model"))
            else:
                self.c.actor.save_checkpoint(str(folder))  # writes folder/actor/
            if state.inflight_payload is not None:
                write_inflight(folder, state.inflight_payload)

        return self.checkpoints.save(state.step, write_actor, state.to_json(), dump_yaml(self.cfg, redact=True))

    # ------------------------------------------------------------------ the loop
    def total_steps(self) -> int:
        return training_steps(self.cfg, self.c.train_loader)

    def fit(self, progress=None, stop: threading.Event | None = None) -> FitResult:
        """Train until the step budget is spent or ``stop`` is set (checked between steps, so a step in flight
        finishes). Either way the last completed step is checkpointed unless it already is."""
        tcfg = self.cfg.trainer
        history: list[dict[str, float]] = []
        total = self.total_steps()
        if tcfg.val_before_train or tcfg.val_only:
            self.validate()
            if tcfg.val_only:
                return self._result(history, stopped=False)
        task = progress.add_task("GRPO", total=total, completed=self.step) if progress else None
        while True:
            stopped = self._train_until(total, history, progress, task, stop)
            self.pipe.close()  # a stop leaves the prefetched batch's scoring in flight: joined (the batch is kept)
            if self._save_last_step():
                return self._result(history, stopped=stopped)
            history[:] = [row for row in history if row["step"] <= self.step]  # rewound: those steps run again

    def _train_until(self, total: int, history: list[dict[str, float]], progress, task, stop) -> bool:
        """Train steps until ``total`` or a stop request (then ``True``); lost actor workers rewind and redo."""
        tcfg = self.cfg.trainer
        while self.step < total:
            if stop is not None and stop.is_set():
                logger.warning("stop requested: ending after step %d of %d", self.step, total)
                return True
            metrics = self.recovery.run(self.train_step)
            if metrics is None:  # an actor worker was lost: rewound to the newest checkpoint, its steps redone
                history[:] = [row for row in history if row["step"] <= self.step]
                continue
            history.append(metrics)
            if tcfg.val_freq > 0 and self.step % tcfg.val_freq == 0 and self.recovery.validate(self.validate) is None:
                history[:] = [row for row in history if row["step"] <= self.step]  # rewound past this step
            if progress is not None:
                progress.update(task, completed=self.step, description=f"GRPO reward {metrics['reward/mean']:.2f}")
        return False

    def _save_last_step(self) -> bool:
        """Checkpoint the last completed step unless it already is; ``False`` when an actor worker was lost while
        writing it and the run was rewound to the newest complete checkpoint (the caller trains those steps again)."""
        latest = self.checkpoints.latest()
        if self.step == 0 or (latest is not None and latest.step == self.step):
            return True
        return self.recovery.save(lambda: self._maybe_save(self.step, force=True))

    def _result(self, history: list[dict[str, float]], *, stopped: bool) -> FitResult:
        latest = self.checkpoints.latest()
        return FitResult(history, step=self.step, stopped=stopped, checkpoint=latest.path if latest else None)


def _model_only(path: Path) -> bool:
    return DriverState.read(path).model_only
