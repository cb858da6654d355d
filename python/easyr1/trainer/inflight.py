"""What the off-policy step pipeline keeps between threads: the batch generated ahead of its step
(:class:`InFlight`), the order in which batches are scored (:class:`ScoringTurns`), the streaming entry points
the pipeline looks for on the rollout pool and the reward pipeline (:class:`StreamsRollout`,
:class:`ScoresStream`), and the engines' own log-probs as the behaviour log-probs (:func:`rollout_log_probs`,
``trainer.behaviour_log_probs: rollout``). Used by :mod:`easyr1.trainer.pipeline`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

from easyr1.core.types import EditSample, PolicyPrompt, RolloutOutput, SamplingParams

if TYPE_CHECKING:
    from .scoring import ScoredBatch


@runtime_checkable
class StreamsRollout(Protocol):
    """A rollout pool that yields responses as they are generated (completion order)."""

    def generate_stream(
        self, prompts: Sequence[PolicyPrompt], sampling: SamplingParams
    ) -> Iterator[list[RolloutOutput]]: ...


@runtime_checkable
class ScoresStream(Protocol):
    """A reward pipeline that scores responses as they arrive (same result as ``score``)."""

    def score_stream(
        self,
        rows: Sequence[EditSample],
        chunks: Iterator[list[RolloutOutput]],
        on_span: Callable[[str, float, float, int], None] | None = None,
    ) -> ScoredBatch: ...


class MissingRolloutLogProbs(RuntimeError):
    """``trainer.behaviour_log_probs: rollout`` and the engine returned no (or the wrong number of, or non-finite)
    log-probs for a response: the step fails, nothing is filled in."""


def rollout_log_probs(outputs: Sequence[RolloutOutput], width: int | None = None) -> torch.Tensor:
    """(N, T) float32 behaviour log-probs from the engines' own per-token log-probs (``RolloutOutput.logprobs``):
    row i holds response i's, zero beyond its length — the layout of the actor's ``compute_log_probs``. ``T`` is
    ``width`` or the longest response. Raises :class:`MissingRolloutLogProbs` naming the first response whose
    log-probs are missing, of another length than its tokens, or not finite."""
    longest = max((len(o.token_ids) for o in outputs), default=0)
    out = torch.zeros(len(outputs), max(longest, width or 0), dtype=torch.float32)
    for i, o in enumerate(outputs):
        lp = o.logprobs
        problem = None
        if lp is None:
            problem = "no log-probs"
        elif len(lp) != len(o.token_ids):
            problem = f"{len(lp)} log-probs for {len(o.token_ids)} tokens"
        else:
            row = torch.tensor(lp, dtype=torch.float32)
            if bool(torch.isfinite(row).all()):
                out[i, : len(lp)] = row
            else:
                problem = "non-finite log-probs"
        if problem is not None:
            raise MissingRolloutLogProbs(
                f"trainer.behaviour_log_probs=rollout: the rollout engine returned {problem} for sample "
                f"{o.sample_index} of prompt {o.prompt_id!r} (response {i} of {len(outputs)}); the step fails "
                "(trainer.behaviour_log_probs=actor recomputes them on the actor)"
            )
    return out if width is None else out[:, :width]


class ScoringCancelled(Exception):
    """A scoring whose job was cancelled before its turn came."""


class ScoringTurns:
    """Scorings run one at a time, in the order their tickets were taken; a ticket released before its turn (a
    cancelled job) is skipped. :meth:`release` is idempotent."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._next = 0
        self._serving = 0
        self._done: set[int] = set()

    def take(self) -> int:
        with self._cv:
            ticket, self._next = self._next, self._next + 1
            return ticket

    def wait(self, ticket: int, cancel: threading.Event | None = None) -> bool:
        """Block until ``ticket``'s turn; ``False`` when ``cancel`` is set (or the ticket released) first."""
        with self._cv:
            while self._serving != ticket:
                if ticket in self._done or ticket < self._serving or (cancel is not None and cancel.is_set()):
                    return False
                self._cv.wait(0.05)
            return not (cancel is not None and cancel.is_set())

    def release(self, ticket: int) -> None:
        with self._cv:
            if ticket < self._serving:
                return
            self._done.add(ticket)
            while self._serving in self._done:
                self._done.discard(self._serving)
                self._serving += 1
            self._cv.notify_all()


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
    """(N, T) behaviour log-probs: the actor's before the update that follows the rollout, or the engines' own
    (``trainer.behaviour_log_probs: rollout``)."""
    timings: dict[str, float] = field(default_factory=dict)
    error: BaseException | None = None
    """A failure of the rollout or the behaviour log-probs (raised by ``settle``)."""
    ticket: int | None = None
    """Its scoring turn (:class:`ScoringTurns`)."""
    cancel: threading.Event = field(default_factory=threading.Event)
    scorer: threading.Thread | None = None
    """The thread scoring it (started by the background thread once the responses exist)."""
    scored: ScoredBatch | None = None
    """Its scores; ``None`` until the scoring ends, and after a restore (re-scored when a step takes it)."""
    score_error: BaseException | None = None
    """A failure of the scoring (raised once, by the step that takes the batch)."""
    pool_metrics: dict[str, float] | None = None
    """The editor pool's / judge's counters drained at the end of its scoring."""

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
