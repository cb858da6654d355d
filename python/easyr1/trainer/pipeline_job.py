"""``off_policy_1``'s background job and the in-flight batch's life (launch, settle, cancel, checkpoint, restore):
the part of :class:`~easyr1.trainer.pipeline.StepPipeline` that runs beside the step. The rules it keeps (one
actor user at a time, scoring turns, counters, failures, checkpoints) are in :mod:`easyr1.trainer.pipeline`'s
docstring."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from easyr1.core.types import RolloutOutput

from .checkpoint import DriverState, read_inflight
from .inflight import InFlight, ScoringCancelled, ScoringTurns, rollout_log_probs

if TYPE_CHECKING:
    from .stage_spans import StageSpans

logger = logging.getLogger("easyr1.trainer.pipeline")


class BackgroundJob:
    """Mixin of :class:`~easyr1.trainer.pipeline.StepPipeline`: batch t+1's rollout, its scoring thread and (with
    ``trainer.behaviour_log_probs: actor``) its behaviour log-probs on the actor, run while step t trains."""

    trainer: Any
    c: Any
    grace_s: float
    spans: StageSpans
    turns: ScoringTurns
    pending: InFlight | None
    rollout_lp: bool
    """``trainer.behaviour_log_probs: rollout``: the engines' log-probs are the behaviour log-probs."""
    _job: InFlight | None
    _thread: threading.Thread | None
    _bucket: dict[str, float] | None

    off_policy: bool
    _score_turn: Any

    @property
    def overlaps_update(self) -> bool:
        """The background job never calls the actor (``off_policy_1`` with the engines' log-probs): update t runs
        while rollout t+1 generates, and ``settle`` waits only before the weight sync."""
        return self.off_policy and self.rollout_lp

    def _launch(self, step: int) -> None:
        if not self.off_policy or step > self.trainer.total_steps() or self._thread is not None:
            return
        loader = self.c.train_loader
        before = loader.state_dict()
        rows = loader.next_batch()
        job = InFlight(step, self.trainer.step, rows, [self.c.build_prompt(r) for r in rows], before)
        job.ticket = self.turns.take()
        self._job = job
        self._thread = threading.Thread(
            target=self._produce, args=(job,), name=f"easyr1-prefetch-step-{step}", daemon=True
        )
        self._thread.start()

    def _produce(self, job: InFlight) -> None:
        """Rollout, then (the scoring started in its own thread) the behaviour log-probs: the actor's (the only
        actor call between the launch and ``settle``), or the engines' own read from the outputs (no actor call)."""
        try:
            sampling = self.trainer._sampling(job.step, 0, False)
            t0 = time.perf_counter()
            with self.spans.span("rollout", job.step, len(job.prompts) * sampling.n):
                outputs = self.c.rollout.generate(job.prompts, sampling)
            job.timings["rollout"] = time.perf_counter() - t0
            job.outputs = outputs
            if self.rollout_lp:  # before the scoring starts: a response without log-probs fails at settle
                job.old_log_probs = rollout_log_probs(outputs)
            if job.cancel.is_set():
                return
            job.scorer = threading.Thread(
                target=self._score_job, args=(job,), name=f"easyr1-prefetch-score-step-{job.step}", daemon=True
            )
            job.scorer.start()
            if self.rollout_lp:
                return
            n = len(outputs) // max(len(job.prompts), 1)
            per_sample = [job.prompts[i // n] for i in range(len(outputs))]
            batch = self.c.make_actor_batch(per_sample, outputs, torch.ones(len(outputs), dtype=torch.bool))
            if job.cancel.is_set():
                return
            t0 = time.perf_counter()
            with self.spans.span("old_logprob", job.step, len(outputs)):
                job.old_log_probs = self.c.actor.compute_log_probs(batch)
            job.timings["old_logprob"] = time.perf_counter() - t0
        except BaseException as exc:  # handed to the driver thread by settle()
            job.error = exc
        finally:
            if job.scorer is None and job.ticket is not None:  # no scoring will take its turn
                self.turns.release(job.ticket)

    def _score_job(self, job: InFlight) -> None:
        assert job.ticket is not None and job.outputs is not None
        try:
            job.scored, job.pool_metrics = self._score_turn(
                job.ticket, job.rows, job.outputs, job.step, job.cancel, drain=True
            )
        except ScoringCancelled:
            pass
        except BaseException as exc:  # raised by the step that takes the batch
            job.score_error = exc
        finally:
            self.turns.release(job.ticket)

    def settle(self) -> None:
        """Wait for the background rollout and behaviour log-probs (before the update, or with
        :attr:`overlaps_update` before the weight sync: the actor and the engines must be free) — not for the
        scoring; its batch becomes :attr:`pending`. An error of the rollout or the log-probs is raised here, once
        (the scoring, if started, is cancelled and joined)."""
        if self._thread is None:
            return
        self._thread.join()
        job, self._thread, self._job = self._job, None, None
        assert job is not None
        if job.error is not None:
            self._stop(job, None)
            self.c.train_loader.load_state_dict(job.loader_before)
            raise job.error
        self.pending = job

    def await_job(self, step: int) -> None:
        """:meth:`settle` the job of batch ``step`` + 1 if one runs (an ``await_prefetch`` span)."""
        if self._thread is not None:
            with self.spans.span("await_prefetch", step + 1):
                self.settle()

    def _stop(self, job: InFlight, thread: threading.Thread | None) -> None:
        """Cancel ``job`` and join its threads (``trainer.stop_grace_s`` in all); a thread still running then is
        left behind (daemon) and its scoring turn released, so later scorings do not wait for it."""
        job.cancel.set()
        deadline = time.monotonic() + self.grace_s
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
        scorer = job.scorer
        if scorer is not None:
            scorer.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in (thread, scorer) if t is not None and t.is_alive()]
        if alive:
            logger.error(
                "the background work of step %d (%s) did not end within %.0f s of the cancel; left behind (daemon)",
                job.step,
                ", ".join(alive),
                self.grace_s,
            )
        else:
            job.scorer = None
        if job.ticket is not None:
            self.turns.release(job.ticket)
        if job.score_error is not None:
            logger.warning("the background scoring of step %d failed too: %s", job.step, job.score_error)
            job.score_error = None

    def abandon(self) -> None:
        """After a failed step: cancel and join the background job (at most ``trainer.stop_grace_s``), drop its
        batch and rewind the loader to before it."""
        if self._thread is None:
            return
        job, thread, self._thread, self._job = self._job, self._thread, None, None
        assert job is not None
        self._stop(job, thread)
        if job.error is not None:
            logger.warning("the background rollout of step %d failed too: %s", job.step, job.error)
        self.c.train_loader.load_state_dict(job.loader_before)

    def drop_later(self) -> None:
        """After a failed step: drop a batch prefetched for a step after it (loader rewound to before it)."""
        self.abandon()
        if self.pending is not None and self.pending.step > self.trainer.step + 1:
            self._stop(self.pending, None)
            self.c.train_loader.load_state_dict(self.pending.loader_before)
            self.pending = None

    def close(self) -> None:
        """Cancel and join what is in flight (between steps: the prefetched batch's scoring); the prefetched batch
        is kept (it is in the checkpoint) and re-scored by the step that takes it if its scoring did not end."""
        self.abandon()
        if self.pending is not None and self.pending.scorer is not None:
            self._stop(self.pending, None)

    @property
    def in_flight(self) -> bool:
        """The background rollout/log-probs run (the scoring of :attr:`pending` may run after it)."""
        return self._thread is not None

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_state(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The in-flight batch's JSON part and payload for :class:`DriverState` (``None`` when there is none): its
        responses and behaviour log-probs, not its scores (re-scored on restore)."""
        if self.pending is None:
            return None, None
        return self.pending.meta(), self.pending.payload()

    def restore(self, path: Path | None, state: DriverState) -> None:
        """Rewind the loader to ``state`` and take back its in-flight batch (off_policy_1) or drop it."""
        self.abandon()
        if self.pending is not None:
            self._stop(self.pending, None)
        self.pending = None
        self._bucket = None
        loader = self.c.train_loader
        meta = state.inflight
        if meta is None:
            loader.load_state_dict(state.loader)
            return
        loader.load_state_dict(meta["loader"])
        if not self.off_policy:
            logger.info("checkpoint %s holds an off-policy in-flight batch; dropped, regenerated on-policy", path)
            return
        rows = loader.next_batch()
        if [r.id for r in rows] != list(meta["ids"]):
            raise RuntimeError(
                f"{path}: the in-flight batch's rows {list(meta['ids'])[:3]}… are not what the data loader yields "
                f"at its saved position ({[r.id for r in rows][:3]}…): the training data changed"
            )
        payload = read_inflight(path)
        outputs = [RolloutOutput(**o) for o in payload["outputs"]]
        old_log_probs = payload["old_log_probs"]
        if old_log_probs is None and self.rollout_lp:  # saved without them: the engines' own, kept in the outputs
            old_log_probs = rollout_log_probs(outputs)
        self.pending = InFlight(
            step=int(meta["step"]),
            version=int(meta["version"]),
            rows=rows,
            prompts=[self.c.build_prompt(r) for r in rows],
            loader_before=meta["loader"],
            outputs=outputs,
            old_log_probs=old_log_probs,
            timings=dict(payload.get("timings") or {}),  # logged with the step that trains on it
        )  # not scored: the step that takes it scores it (the scores were not saved)
