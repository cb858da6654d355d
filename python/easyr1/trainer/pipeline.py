"""How the pools of one step overlap (``trainer.pipeline``): ``staged``, ``streaming`` and ``off_policy_1``.

**staged** — rollout, then every edit, every judge call, the update and the weight sync, in turn.

**streaming** — on-policy: the rollout pool yields its responses as they are generated
(``Rollout.generate_stream``) and the reward pipeline edits and judges each as soon as it arrives
(``RewardPipeline.score_stream``); same rows, rewards, masks and digests as ``staged``. When the rollout pool or the
reward pipeline has no streaming entry point, the step runs ``staged`` (one warning at start).

**off_policy_1** — one-step off-policy; batch t+1 is generated, given its behaviour log-probs *and scored* while
step t runs:

1. step t takes the batch prefetched during step t−1 (step 1, or after a resume without an in-flight batch:
   generated now, on-policy, scored on the driver thread) and at once launches the background job of batch t+1:
   its rows are read from the loader on the driver thread (the staged data order), then a thread generates their
   responses with the engines' weights (those after update t−1), starts a second thread that scores them
   (``RewardPipeline.score_stream``: every edit submitted at once, each edited image judged as soon as it exists —
   the same result as ``score``) and computes the **behaviour log-probs** on the actor, which still holds the
   weights that generated them: the PPO ratio's ``old_log_probs`` are exactly the behaviour policy's, with the
   training forward's numerics (the engines' own log-probs differ in kernels and precision). They are computed for
   every sample (masks are known only after scoring) and selected at update time;
2. step t waits for its own batch's scores (scored during step t−1), then for batch t+1's rollout and log-probs
   (``settle``) — not for its scores, which overlap update t and the sync; update t trains with the stored
   behaviour log-probs (reference log-probs are computed at update time) and syncs v(t) into the engines.

Per step: R + L + U + S (rollout, log-probs, update, sync) while scoring a batch takes at most R + 2L + U + S.

**Engine log-probs** (``trainer.behaviour_log_probs: rollout``, opt-in): the behaviour log-probs are the engines'
own per-token log-probs of the sampled tokens (``RolloutOutput.logprobs``, temperature 1, the config requires
``worker.rollout.temperature: 1.0``), read by the background thread into the actor's (N, T) zero-padded layout
(:func:`~easyr1.trainer.inflight.rollout_log_probs`; a response without them fails the step at ``settle``). The
job then never calls the actor, so step t runs: take batch t → launch job t+1 → reference log-probs and update t
on the actor *while rollout t+1 generates* → ``settle`` → sync v(t). Per step about max(R, L_ref + U) + S; over
two steps a batch's rollout, scoring, update and the sync that the rollout two steps on waits for are one chain,
so a step also takes at least (R + scoring + U + S) / 2. Batches generated on the spot (step 1, and every batch of
``staged``/``streaming`` with this option) use the engines' log-probs as well, read at update time. The default is
the actor's: the engines' kernels and precision differ from the trainer's on GPUs (vLLM bf16 vs FSDP), which moves
the ratio off 1 even on-policy; on CPU with the HF engine in fp32 the two agree.

**The actor is never called from two threads at once**: between a job's launch and ``settle`` (which joins its
rollout/log-prob thread) that thread is the actor's only user, or with the engines' log-probs it never calls it
(the driver's update then runs beside the rollout); otherwise the driver calls the actor (update, reference
log-probs, checkpoint, restore) only after ``settle`` or after ``abandon`` cancelled and joined it; the scoring
thread never calls it. **Scorings take turns** (:class:`ScoringTurns`): tickets are taken on the driver thread in
data order (a driver-side scoring takes its ticket before launching the next job; validation when it scores) and a
scoring starts when every earlier ticket is done. The editor pool holds its lock for a whole stream
(``EditorPool.open_stream``: a second stream waits for the first), and the pool counters of two scorings could not
be told apart, so two scorings never overlap.

**Counters**: an off-policy training scoring drains the editor pool's and the HTTP judge's ``drain_metrics`` inside
its turn, when it ends (that scoring's work, plus anything outside any scoring since the previous drain, e.g.
replica restarts); the step that trains on the batch logs them (:meth:`StepPipeline.drain_pools`): batch t+1's
scoring, done during step t, is in step t+1's row. A cancelled scoring drains nothing (its counters go to the next
drain). Validation and the other modes drain at the end of the step/validation. **Spans**: the job's spans carry
``for_step`` t+1. Every ``score_stream`` scoring (off_policy_1's, in the background or on the driver, and
streaming's) reports each edit call and judge call as it ends (``on_span``, called on the editor stream's or the
judge's thread); the pipeline adds it to :class:`StageSpans` at once and does not add the scorer's
``ScoredBatch.spans`` again. So an edit/judge call of batch t+1 that ended during step t is in step t's record and
counts for step t's ``pipeline/busy/editor``/``judge`` (and Prometheus' ``easyr1_pool_busy_ratio``), although batch
t+1's scoring returns during step t+1; a call still running when step t closes is written with step t+1's record and
counts only for its part in that window. ``staged`` (``RewardPipeline.score``) adds the scorer's spans when the
scoring returns, within the step.

Staleness (the actor's version at the update minus the version that generated the sample) is 1 from step 2 on and
0 for a batch generated on the spot; kept per sample (``StepBatch.versions``), logged as ``pipeline/staleness_mean``
and ``pipeline/staleness_max``. ``algorithm.online_filtering`` is refused with ``off_policy_1`` (a config error): its
refills would read rows after the prefetched ones and change the data order.

Failures: a rollout or log-prob failure is raised by ``settle`` (step t; with the engines' log-probs after update
t and before its sync: the step fails like any other and the run resumes from its last checkpoint); a scoring
failure once, by step t+1 when it takes the batch. A step that fails cancels every job in flight (no actor call
and no new scoring turn after the cancel), joins its threads within ``trainer.stop_grace_s`` (a scoring already in
the editor is waited for, up to that grace), drops the prefetched batch and rewinds the loader to before it.
:meth:`StepPipeline.close` joins what is in flight and keeps the prefetched batch.

Checkpoints save the in-flight batch (``DriverState.inflight``: step, version, row ids, the loader position before
it; ``inflight.pt``: responses with token ids and behaviour log-probs, whichever produced them, kept on restore) —
**not its scores**, which may be incomplete at save time: a restored batch is re-scored when the step that trains
on it begins (deterministic with the sandbox editor and judge: a resumed run logs the same rewards, masks and
digests as one never stopped; a real editor/judge may score differently). A restore (resume, or an actor restart
by ``trainer/recovery.py``) re-reads the rows from the saved loader position; restoring an off-policy checkpoint
into ``staged``/``streaming`` drops the batch and rewinds the loader (it is regenerated on-policy). The
off-policy background job lives in :mod:`easyr1.trainer.pipeline_job`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from easyr1.core.types import EditSample, PolicyPrompt, RolloutOutput, SamplingParams
from easyr1.editing.protocol import DrainsMetrics

from .inflight import InFlight, ScoresStream, ScoringCancelled, ScoringTurns, StreamsRollout
from .pipeline_job import BackgroundJob
from .stage_spans import StageSpans, perf_to_wall
from .step_batch import StepBatch

if TYPE_CHECKING:
    from .scoring import ScoredBatch

logger = logging.getLogger(__name__)

_REPORTED = frozenset({"edit", "judge"})
"""The stages ``score_stream`` reports through ``on_span`` as each call ends."""


class StepPipeline(BackgroundJob):
    """The trainer's rollout side for one pipeline mode: where a step's responses come from, the background rollout
    and scoring of ``off_policy_1``, the pool counters of each step, and the stage spans
    (``trainer/stage_spans.py``)."""

    def __init__(self, trainer: Any, run_dir: Path):
        self.trainer = trainer
        self.c = trainer.c
        self.mode = trainer.cfg.trainer.pipeline
        self.grace_s = trainer.cfg.trainer.stop_grace_s
        self.rollout_lp = trainer.cfg.trainer.behaviour_log_probs == "rollout"
        self.spans = StageSpans(run_dir / "stage_spans.jsonl")
        self.pending: InFlight | None = None
        """The batch prefetched for the next step (off_policy_1); its scoring may still run."""
        self.turns = ScoringTurns()
        self._job: InFlight | None = None
        self._thread: threading.Thread | None = None
        self._bucket: dict[str, float] | None = None
        """Pool counters of the scoring of the batch the current step trains on (off_policy_1)."""
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
        if rows is None:
            if self.pending is not None and self.pending.step == step:
                job, self.pending = self.pending, None
                unscored = job.scorer is None and job.scored is None and job.score_error is None
                ticket = self.turns.take() if unscored else None  # restored: re-scored before the next batch
                try:
                    if not validation and attempt == 0:
                        self._launch(step + 1)  # the engines hold v(step-1): step+1's rollout runs from now on
                    scored = self._scored(job, timings, ticket)
                finally:
                    if ticket is not None:
                        self.turns.release(ticket)
                batch = StepBatch.from_pass(
                    job.rows, job.prompts, job.outputs, scored, version=job.version, old_log_probs=job.old_log_probs
                )
                return batch, scored, [row.id for row in job.rows]
            if self.pending is not None:  # the driver was rewound without restore(): never train on it
                logger.warning("dropping the batch prefetched for step %d (step %d runs)", self.pending.step, step)
                self._stop(self.pending, None)
                self.pending = None
            rows = self.c.train_loader.next_batch()
        prompts = [self.c.build_prompt(row) for row in rows]
        sampling = self.trainer._sampling(step, attempt, validation)
        if self.streaming:
            batch, scored = self._stream(rows, prompts, sampling, step, timings)
            return batch, scored, [row.id for row in rows]
        version = self.trainer.step
        t0 = time.perf_counter()
        with self.spans.span("rollout", step, len(prompts) * sampling.n):
            outputs = self.c.rollout.generate(prompts, sampling)
        timings["rollout"] = timings.get("rollout", 0.0) + time.perf_counter() - t0
        ticket = self.turns.take()  # before the launch: this batch is scored before the next one
        try:
            if not validation and attempt == 0:
                self._launch(step + 1)  # the engines are free now: step t+1's rollout runs while this one is scored
            scored, pools = self._score_turn(
                ticket, rows, outputs, step, None, drain=self.off_policy and not validation
            )
        finally:
            self.turns.release(ticket)
        if pools is not None:
            self._bucket = pools
        _add(timings, scored.timings)
        batch = StepBatch.from_pass(rows, prompts, outputs, scored, version=version)
        return batch, scored, [row.id for row in rows]

    def _scored(self, job: InFlight, timings: dict[str, float], ticket: int | None) -> ScoredBatch:
        """The prefetched batch's scores: awaited from its scoring thread, or computed now in ``ticket``'s turn (a
        restored batch, or one whose scoring was cancelled). Its work done during the previous step goes into this
        step's timings."""
        if job.scorer is not None:
            job.scorer.join()
            job.scorer = None
        if job.ticket is not None:
            self.turns.release(job.ticket)
        _add(timings, job.timings)
        if job.score_error is not None:
            error, job.score_error = job.score_error, None
            raise error
        scored, pools = job.scored, job.pool_metrics
        if scored is None:
            assert job.outputs is not None
            turn = self.turns.take() if ticket is None else ticket
            try:
                scored, pools = self._score_turn(turn, job.rows, job.outputs, job.step, None, drain=True)
            finally:
                self.turns.release(turn)  # idempotent: the caller's ticket too
        _add(timings, scored.timings)
        self._bucket = pools
        return scored

    def _score_turn(
        self,
        ticket: int,
        rows: list[EditSample],
        outputs: list[RolloutOutput],
        step: int,
        cancel: threading.Event | None,
        *,
        drain: bool,
    ) -> tuple[ScoredBatch, dict[str, float] | None]:
        """Score ``outputs`` in ``ticket``'s turn (the caller releases it); with ``drain``, the pool counters are
        drained before the turn ends (that scoring's work). Raises :class:`ScoringCancelled` when cancelled first."""
        if not self.turns.wait(ticket, cancel):
            raise ScoringCancelled
        start = time.time()
        streams = self.off_policy and isinstance(self.trainer.scorer, ScoresStream)
        if streams:  # each image judged once edited; each call's span recorded as it ends
            scored = self.trainer.scorer.score_stream(rows, iter([outputs]), on_span=self._span_recorder(step))
        else:
            scored = self.trainer.scorer.score(rows, outputs)
        self._score_spans(scored, step, start, reported=streams)
        if cancel is not None and cancel.is_set():  # dropped: its counters go to the next drain
            raise ScoringCancelled
        return scored, (self._drain_now() if drain else None)

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

        scored = self.trainer.scorer.score_stream(rows, chunks(), on_span=self._span_recorder(step))
        self._score_spans(scored, step, start, rollout_recorded=True, reported=True)
        _add(timings, scored.timings)
        order = {p.id: i for i, p in enumerate(prompts)}
        outputs = list(
            getattr(scored, "outputs", None) or sorted(got, key=lambda o: (order[o.prompt_id], o.sample_index))
        )
        return StepBatch.from_pass(rows, prompts, outputs, scored, version=self.trainer.step), scored

    def _span_recorder(self, step: int) -> Callable[[str, float, float, int], None]:
        """``on_span`` for a ``score_stream`` of ``step``'s batch: each span (``time.perf_counter()`` times) goes onto
        the wall clock and into :attr:`spans` at once, from whatever thread ended it."""

        def record(stage: str, begin: float, end: float, items: int) -> None:
            self.spans.add(stage, perf_to_wall(begin), perf_to_wall(end), step, items)

        return record

    def _score_spans(
        self, scored: ScoredBatch, step: int, start: float, *, rollout_recorded: bool = False, reported: bool = False
    ) -> None:
        """The scorer's own spans when it records them, else edit → judge → reward laid end to end from ``start``
        (the phases of ``RewardPipeline.score`` run in that order). ``reported``: the scorer handed its edit and judge
        spans to :meth:`_span_recorder` as they ended; they are not added again."""
        own = getattr(scored, "spans", None)
        if own or reported:
            for stage, begin, end, items in own or ():
                if (rollout_recorded and stage == "rollout") or (reported and stage in _REPORTED):
                    continue
                self.spans.add(stage, begin, end, step, items)
            return
        cursor = start
        for stage in ("edit", "judge", "reward"):
            seconds = scored.timings.get(stage, 0.0)
            items = {"edit": scored.counts.get("edits"), "judge": scored.counts.get("judged")}.get(stage)
            self.spans.add(stage, cursor, cursor + seconds, step, items)
            cursor += seconds

    # ------------------------------------------------------------------ pool counters
    def _drain_now(self) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if isinstance(self.c.editor, DrainsMetrics):  # the pool; an in-process editor keeps no counters
            metrics.update(self.c.editor.drain_metrics())
        if isinstance(self.c.judge, DrainsMetrics):  # the HTTP judge counts its calls, retries and waits itself
            metrics.update(self.c.judge.drain_metrics())
        return metrics

    def drain_pools(self) -> dict[str, float]:
        """The editor pool's and the judge's counters for the step (or validation) that ends: those drained at the
        end of the scoring of the batch it trained on (off_policy_1: that scoring may have run during the previous
        step, while another batch's scoring may run now), else drained now."""
        if self._bucket is not None:
            metrics, self._bucket = self._bucket, None
            return metrics
        return self._drain_now()


def _add(timings: dict[str, float], more: dict[str, float]) -> None:
    for name, seconds in more.items():
        timings[name] = timings.get(name, 0.0) + seconds
