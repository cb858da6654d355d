"""How the pools of one step overlap (``trainer.pipeline``): ``staged``, ``streaming`` and ``off_policy_1``.

**staged** — rollout, then every edit, every judge call, the update and the weight sync, in turn.

**streaming** — on-policy: the rollout pool yields its responses as they are generated
(``Rollout.generate_stream``) and the reward pipeline edits and judges each as soon as it arrives
(``RewardPipeline.score_stream``); same rows, rewards, masks and digests as ``staged``. When the rollout pool or the
reward pipeline has no streaming entry point, the step runs ``staged`` (one warning at start).

**off_policy_1** — one-step off-policy. During step t the rollout of step t+1 runs in a background thread (Ray
calls release the GIL) while step t's batch is edited and judged:

1. step t takes its batch: the one prefetched during step t−1 (step 1, or after a resume without an in-flight
   batch: generated now, on-policy);
2. the rows of step t+1 are read from the loader (on the driver thread: the data order is the staged order) and
   the thread generates their responses with the engines' weights, i.e. those after update t−1;
3. then, in the same thread, the actor computes the **behaviour log-probs** of that batch: the actor still holds the
   weights after update t−1 — the ones that generated it — and is idle while step t is edited and judged. So the
   PPO ratio's ``old_log_probs`` are exactly the behaviour policy's, with the training forward's numerics (the
   engines' own log-probs differ from the actor's in kernels and precision, which would bias the ratio). They are
   computed for every sample (masks are known only after scoring) and selected at update time;
   Meanwhile step t's batch is scored with ``RewardPipeline.score_stream`` (one chunk: every edit submitted at
   once, each edited image judged as soon as it exists — the same result as ``score``);
4. step t's update waits for the thread (the actor and the engines are then free), trains with the stored
   behaviour log-probs (the reference log-probs of the KL term are computed at update time: the reference never
   changes) and syncs weights v(t) into the engines.

Staleness (the actor's version at the update minus the version that generated the sample) is 1 from step 2 on and
0 for a batch generated on the spot; it is kept per sample (``StepBatch.versions``) and logged as
``pipeline/staleness_mean`` and ``pipeline/staleness_max``. ``algorithm.online_filtering`` is refused with
``off_policy_1`` (a config error): its refills would read rows after the prefetched ones and change the data order.

The thread never outlives its step: the step awaits it before the update, and a step that fails (an exception, a
:class:`~easyr1.trainer.grpo.StageFailure`) cancels it (no actor call is made after the cancel) and joins it within
``trainer.stop_grace_s``; the prefetched batch is then dropped and the loader rewound to before it.

Checkpoints save the in-flight batch (``DriverState.inflight``: its step, version, row ids and the loader position
before it; ``inflight.pt``: responses with token ids and behaviour log-probs), so a resumed run trains on the same
data with the same behaviour log-probs as one that was never stopped. A restore (resume, or an actor restart by
``trainer/recovery.py``) re-reads the rows from the loader position saved before them; restoring an off-policy
checkpoint into ``staged``/``streaming`` drops the batch and rewinds the loader (it is regenerated on-policy).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

from easyr1.core.types import EditSample, PolicyPrompt, RolloutOutput, SamplingParams

from .checkpoint import DriverState, read_inflight
from .stage_spans import StageSpans
from .step_batch import StepBatch

if TYPE_CHECKING:
    from .scoring import ScoredBatch

logger = logging.getLogger(__name__)


@runtime_checkable
class StreamsRollout(Protocol):
    """A rollout pool that yields responses as they are generated (completion order)."""

    def generate_stream(
        self, prompts: Sequence[PolicyPrompt], sampling: SamplingParams
    ) -> Iterator[list[RolloutOutput]]: ...


@runtime_checkable
class ScoresStream(Protocol):
    """A reward pipeline that scores responses as they arrive (same result as ``score``)."""

    def score_stream(self, rows: Sequence[EditSample], chunks: Iterator[list[RolloutOutput]]) -> ScoredBatch: ...


@dataclass
class InFlight:
    """A batch generated for ``step`` ahead of it (off_policy_1), with what the update needs of it."""

    step: int
    version: int
    """Policy version (updates applied) of the engine weights that generate it."""
    rows: list[EditSample]
    prompts: list[PolicyPrompt]
    loader_before: dict[str, Any]
    """The training loader's position before its rows were read."""
    outputs: list[RolloutOutput] | None = None
    old_log_probs: torch.Tensor | None = None
    """(N, T) behaviour log-probs (the actor before the update that follows the rollout)."""
    timings: dict[str, float] = field(default_factory=dict)
    error: BaseException | None = None

    def meta(self) -> dict[str, Any]:
        ids = [r.id for r in self.rows]
        return {"step": self.step, "version": self.version, "ids": ids, "loader": self.loader_before}

    def payload(self) -> dict[str, Any]:
        outputs = [
            {
                "prompt_id": o.prompt_id,
                "sample_index": o.sample_index,
                "text": o.text,
                "token_ids": list(o.token_ids),
                "logprobs": o.logprobs,
                "finish_reason": o.finish_reason,
            }
            for o in self.outputs or []
        ]
        return {"outputs": outputs, "old_log_probs": self.old_log_probs, "timings": dict(self.timings)}


class StepPipeline:
    """The trainer's rollout side for one pipeline mode: where a step's responses come from, the background rollout
    of ``off_policy_1``, and the stage spans (``trainer/stage_spans.py``)."""

    def __init__(self, trainer: Any, run_dir: Path):
        self.trainer = trainer
        self.c = trainer.c
        self.mode = trainer.cfg.trainer.pipeline
        self.grace_s = trainer.cfg.trainer.stop_grace_s
        self.spans = StageSpans(run_dir / "stage_spans.jsonl")
        self.pending: InFlight | None = None
        """The batch prefetched for the next step (off_policy_1)."""
        self._job: InFlight | None = None
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self.streaming = (
            self.mode == "streaming"
            and isinstance(self.c.rollout, StreamsRollout)
            and isinstance(trainer.scorer, ScoresStream)
        )
        if self.mode == "streaming" and not self.streaming:
            logger.warning(
                "trainer.pipeline=streaming: the rollout pool (%s) or the reward pipeline has no streaming entry "
                "point; the steps run staged (same results, no overlap)",
                type(self.c.rollout).__name__,
            )

    @property
    def off_policy(self) -> bool:
        return self.mode == "off_policy_1"

    # ------------------------------------------------------------------ a step's rollout + scoring
    def rollout_and_score(
        self, rows: list[EditSample] | None, step: int, timings: dict[str, float], *, attempt: int, validation: bool
    ) -> tuple[StepBatch, ScoredBatch, list[str]]:
        """Responses for ``rows`` (``None``: the step's first batch — the prefetched one, or the loader's next rows)
        scored; returns the step batch, the scored batch and the ids of the rows used."""
        prefetched = None
        if rows is None:
            if self.pending is not None and self.pending.step == step:
                prefetched, self.pending = self.pending, None
                rows = prefetched.rows
            else:
                if self.pending is not None:  # the driver was rewound without restore(): never train on it
                    logger.warning("dropping the batch prefetched for step %d (step %d runs)", self.pending.step, step)
                    self.pending = None
                rows = self.c.train_loader.next_batch()
        if prefetched is not None:
            prompts, outputs = prefetched.prompts, prefetched.outputs
            version, old_lp = prefetched.version, prefetched.old_log_probs
            for name, seconds in prefetched.timings.items():  # this batch's work, done during the previous step
                timings[name] = timings.get(name, 0.0) + seconds
        else:
            prompts = [self.c.build_prompt(row) for row in rows]
            version, old_lp = self.trainer.step, None
            sampling = self.trainer._sampling(step, attempt, validation)
            if self.streaming:
                batch, scored = self._stream(rows, prompts, sampling, step, timings)
                if not validation and attempt == 0:
                    self._launch(step + 1)
                return batch, scored, [row.id for row in rows]
            t0 = time.perf_counter()
            with self.spans.span("rollout", step, len(prompts) * sampling.n):
                outputs = self.c.rollout.generate(prompts, sampling)
            timings["rollout"] = timings.get("rollout", 0.0) + time.perf_counter() - t0
        if not validation and attempt == 0:
            self._launch(step + 1)  # the engines are free now: step t+1's rollout runs while this batch is scored
        assert outputs is not None
        start = time.time()
        if self.off_policy and isinstance(self.trainer.scorer, ScoresStream):  # each image judged once edited
            scored = self.trainer.scorer.score_stream(rows, iter([outputs]))
        else:
            scored = self.trainer.scorer.score(rows, outputs)
        self._score_spans(scored, step, start)
        _add(timings, scored.timings)
        batch = StepBatch.from_pass(rows, prompts, outputs, scored, version=version, old_log_probs=old_lp)
        return batch, scored, [row.id for row in rows]

    def _stream(
        self,
        rows: list[EditSample],
        prompts: list[PolicyPrompt],
        sampling: SamplingParams,
        step: int,
        timings: dict[str, float],
    ) -> tuple[StepBatch, ScoredBatch]:
        got: list[RolloutOutput] = []
        start = time.time()
        t0 = time.perf_counter()

        def chunks() -> Iterator[list[RolloutOutput]]:
            for chunk in self.c.rollout.generate_stream(prompts, sampling):
                got.extend(chunk)
                yield chunk
            timings["rollout"] = timings.get("rollout", 0.0) + time.perf_counter() - t0
            self.spans.add("rollout", start, time.time(), step, len(got))

        scored = self.trainer.scorer.score_stream(rows, chunks())
        self._score_spans(scored, step, start, rollout_recorded=True)
        _add(timings, scored.timings)
        order = {p.id: i for i, p in enumerate(prompts)}
        outputs = list(
            getattr(scored, "outputs", None) or sorted(got, key=lambda o: (order[o.prompt_id], o.sample_index))
        )
        return StepBatch.from_pass(rows, prompts, outputs, scored, version=self.trainer.step), scored

    def _score_spans(self, scored: ScoredBatch, step: int, start: float, *, rollout_recorded: bool = False) -> None:
        """The scorer's own spans when it records them, else edit → judge → reward laid end to end from ``start``
        (the phases of ``RewardPipeline.score`` run in that order)."""
        own = getattr(scored, "spans", None)
        if own:
            for stage, begin, end, items in own:
                if not (rollout_recorded and stage == "rollout"):
                    self.spans.add(stage, begin, end, step, items)
            return
        cursor = start
        for stage in ("edit", "judge", "reward"):
            seconds = scored.timings.get(stage, 0.0)
            items = {"edit": scored.counts.get("edits"), "judge": scored.counts.get("judged")}.get(stage)
            self.spans.add(stage, cursor, cursor + seconds, step, items)
            cursor += seconds

    # ------------------------------------------------------------------ off_policy_1: the background rollout
    def _launch(self, step: int) -> None:
        if not self.off_policy or step > self.trainer.total_steps() or self._thread is not None:
            return
        loader = self.c.train_loader
        before = loader.state_dict()
        rows = loader.next_batch()
        job = InFlight(step, self.trainer.step, rows, [self.c.build_prompt(r) for r in rows], before)
        self._cancel = threading.Event()
        self._job = job
        self._thread = threading.Thread(
            target=self._produce, args=(job, self._cancel), name=f"easyr1-prefetch-step-{step}", daemon=True
        )
        self._thread.start()

    def _produce(self, job: InFlight, cancel: threading.Event) -> None:
        try:
            sampling = self.trainer._sampling(job.step, 0, False)
            t0 = time.perf_counter()
            with self.spans.span("rollout", job.step, len(job.prompts) * sampling.n):
                outputs = self.c.rollout.generate(job.prompts, sampling)
            job.timings["rollout"] = time.perf_counter() - t0
            job.outputs = outputs
            if cancel.is_set():
                return
            n = len(outputs) // max(len(job.prompts), 1)
            per_sample = [job.prompts[i // n] for i in range(len(outputs))]
            batch = self.c.make_actor_batch(per_sample, outputs, torch.ones(len(outputs), dtype=torch.bool))
            t0 = time.perf_counter()
            with self.spans.span("old_logprob", job.step, len(outputs)):
                job.old_log_probs = self.c.actor.compute_log_probs(batch)
            job.timings["old_logprob"] = time.perf_counter() - t0
        except BaseException as exc:  # handed to the driver thread by settle()
            job.error = exc

    def settle(self) -> None:
        """Wait for the background rollout (before the update: the actor and the engines must be free); its
        batch becomes :attr:`pending`. An error of the background work is raised here, once."""
        if self._thread is None:
            return
        self._thread.join()
        job, self._thread, self._job = self._job, None, None
        assert job is not None
        if job.error is not None:
            self.c.train_loader.load_state_dict(job.loader_before)
            raise job.error
        self.pending = job

    def abandon(self) -> None:
        """After a failed step: cancel and join the background work (at most ``trainer.stop_grace_s``), drop its
        batch and rewind the loader to before it."""
        if self._thread is None:
            return
        self._cancel.set()
        self._thread.join(self.grace_s)
        if self._thread.is_alive():
            logger.error(
                "the background rollout of step %d did not end within %.0f s of the failure; left behind (daemon)",
                self._job.step if self._job else -1,
                self.grace_s,
            )
        job, self._thread, self._job = self._job, None, None
        if job is not None:
            if job.error is not None:
                logger.warning("the background rollout of step %d failed too: %s", job.step, job.error)
            self.c.train_loader.load_state_dict(job.loader_before)

    def drop_later(self) -> None:
        """After a failed step: drop a batch prefetched for a step after it (loader rewound to before it)."""
        self.abandon()
        if self.pending is not None and self.pending.step > self.trainer.step + 1:
            self.c.train_loader.load_state_dict(self.pending.loader_before)
            self.pending = None

    @property
    def in_flight(self) -> bool:
        return self._thread is not None

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_state(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The in-flight batch's JSON part and payload for :class:`DriverState` (``None`` when there is none)."""
        if self.pending is None:
            return None, None
        return self.pending.meta(), self.pending.payload()

    def restore(self, path: Path, state: DriverState) -> None:
        """Rewind the loader to ``state`` and take back its in-flight batch (off_policy_1) or drop it."""
        self.abandon()
        self.pending = None
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
        self.pending = InFlight(
            step=int(meta["step"]),
            version=int(meta["version"]),
            rows=rows,
            prompts=[self.c.build_prompt(r) for r in rows],
            loader_before=meta["loader"],
            outputs=outputs,
            old_log_probs=payload["old_log_probs"],
            timings=dict(payload.get("timings") or {}),  # logged with the step that trains on it
        )


def _add(timings: dict[str, float], more: dict[str, float]) -> None:
    for name, seconds in more.items():
        timings[name] = timings.get(name, 0.0) + seconds
