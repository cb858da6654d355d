"""Lost actor workers (issue 21): rebuild the actor pool, restore it and the driver from the newest complete
checkpoint, and train the lost steps again.

An actor worker that dies during a step (SIGKILL, OOM kill, node loss) takes its shard of the parameters and of
the optimizer state with it, so the survivors cannot go on alone. When a step fails, :class:`ActorRecovery` asks
the actor pool which workers are gone (a ping by a deadline: an error a worker *raised* leaves every worker
answering, and is raised again unchanged). If one is, it

1. finds the newest complete, resumable checkpoint (the one ``resume: auto`` would take),
2. kills every rank and starts the whole world again (``ActorPool.restart_workers``; at most
   ``worker.actor.max_restarts`` times over the run),
3. restores model, optimizer, schedule and the actor's RNG from that checkpoint and rewinds the driver
   (:class:`~easyr1.trainer.checkpoint.DriverState`: data position, RNG, KL coefficient, best validation mean)
   through the same :meth:`GRPOTrainer.restore` a resumed run uses,
4. has the rollout pool rebuild its weight-sync group (the sender is a new process) and syncs the restored weights,

and the loop trains the steps after that checkpoint again: the same rows, the same seeds, the same data digests as
a run without the fault. Restarts are counted as ``actor/restarts``.

**Before the first checkpoint.** A run that started at step 0 has a restore point without any checkpoint: the start
itself. At its first step :class:`ActorRecovery` keeps the driver's step-0 state (:class:`DriverState`: loader
position, RNG, KL coefficient, best validation mean — taken after ``val_before_train``, exactly what step 1 starts
from). An actor lost before any complete checkpoint exists then restarts the world from
``worker.actor.model.model_path`` (what fresh workers load: the start weights, a fresh optimizer and schedule, the
per-rank seeds), rewinds the driver to that state, syncs the start weights into the engines, and trains from step 1
again — the same data digests as a clean run. A *resumed* run (its first step is not step 1) has its checkpoint.

Past the limit, :class:`~easyr1.pools.WorkerLost` names the worker and the cause (``easyr1 train`` prints it as
one line and exits 1). A rank that hangs (alive, silent) is killed by the actor pool's call deadline
(``worker.actor.call_timeout_s``, ``ActorCallTimeout``) and then recovered the same way.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from easyr1.editing.protocol import DrainsMetrics
from easyr1.pools import WorkerLost, describe

from .checkpoint import DriverState
from .rng import capture_rng

logger = logging.getLogger(__name__)

PING_TIMEOUT_S = 60.0
"""How long, after a failed step, each actor worker has to answer a ping before it counts as lost."""


@runtime_checkable
class RestartsWorkers(Protocol):
    """An actor pool that can tell its lost workers and start its whole world again (``ActorPool``)."""

    def lost_workers(self, timeout_s: float = 60.0) -> dict[int, str]:
        """``{rank: cause}`` of the workers that are gone; empty when all answer."""
        ...

    def restart_workers(self, rank: int, cause: str) -> None:
        """Kill every worker and start them again (start weights: restore a checkpoint next)."""
        ...

    def drain_metrics(self) -> dict[str, float]:
        """``actor/restarts`` since the previous call."""
        ...


@runtime_checkable
class RebuildsWeightSync(Protocol):
    """A rollout pool whose weight-sync group must be built again when the sender process changed."""

    def reset_weight_sync(self) -> None: ...


class Restorable(Protocol):
    """What the recovery needs of the trainer (``GRPOTrainer``)."""

    step: int

    def newest_resumable(self) -> Path | None: ...

    def restore(self, path: Path | None, state: DriverState) -> None: ...


class ActorRecovery:
    """Runs the driver's steps and brings a lost actor pool back (see the module docstring).

    Args:
        trainer: the driver (its ``c.actor``, ``c.rollout``, :meth:`newest_resumable`, :meth:`restore`).
        ping_timeout_s: how long a worker has to answer after a failed step.
    """

    def __init__(self, trainer: Any, *, ping_timeout_s: float = PING_TIMEOUT_S):
        self.trainer = trainer
        self.ping_timeout_s = ping_timeout_s
        self.restarts = 0
        """Actor pool restarts so far (this driver's life)."""
        self.start: DriverState | None = None
        """The driver's state before step 1 of a run that started from the start weights (``None`` for a resumed
        run): the restore point before the first checkpoint."""
        self._first_step_seen = False

    @property
    def actor(self) -> Any:
        return self.trainer.c.actor

    def metrics(self) -> dict[str, float]:
        """``actor/restarts`` (and the pool's ``actor/call_timeouts``) since the previous call (0 when the actor pool
        does not restart). Engines replaced by the re-sync of a restore count in the trainer's ``rollout/restarts``."""
        return self.actor.drain_metrics() if isinstance(self.actor, RestartsWorkers) else {"actor/restarts": 0.0}

    def capture_start(self) -> None:
        """Keep the driver's state as the restore point before the first checkpoint, when the run starts at step
        0 (called by :meth:`run` before the run's first step; a resumed run has no start state)."""
        trainer = self.trainer
        self._first_step_seen = True
        if trainer.step != 0:
            return
        best = trainer.best_val
        self.start = DriverState(
            step=0,
            loader=trainer.c.train_loader.state_dict(),
            best_val=best if math.isfinite(best) else None,
            kl_coef=float(trainer.kl_ctrl.value),
            rng=capture_rng(),
        )

    def run(self, step: Callable[[], dict[str, float]], *, what: str | None = None) -> dict[str, float] | None:
        """``step()``'s metrics; ``None`` when an actor worker was lost during it and the run was rewound to the
        newest checkpoint — or, before the first one, to the run's start (the caller goes on with the step after
        it). Any other error is raised unchanged. ``what`` names work that is not the next step (in the logs; the
        steps after the checkpoint, up to the current one, are trained again)."""
        if not self._first_step_seen:
            self.capture_start()
        try:
            return step()
        except WorkerLost:
            raise  # another pool gave up already
        except Exception as exc:
            lost = self._lost_workers(exc)
            if not lost:
                raise
            self._recover(lost, exc, what)
            return None

    def save(self, write: Callable[[], object]) -> bool:
        """Run ``write()`` (the run's last checkpoint, written after the loop); ``False`` when an actor worker was
        lost during it and the run was rewound as after a failed step (the caller trains the rewound steps again,
        then saves). Bounded by ``worker.actor.max_restarts``; any other error is raised unchanged."""
        return self.run(lambda: (write(), {})[1], what=f"the checkpoint of step {self.trainer.step}") is not None

    def validate(self, validate: Callable[[], dict[str, float]]) -> dict[str, float] | None:
        """``validate()``'s metrics for a validation pass after a training step. The rollout and editor pools
        replace their own lost workers inside it (a fresh engine gets the last sync's weights from the actor pool);
        an actor worker lost meanwhile (found when such an engine asks for the weights) is brought back as after a
        step. Rewound to this very step's checkpoint, the pass runs again — the failed pass logged no row, and its
        pool counters are left out of the new one (each edit/judge call of the row counted once; its restarts go to
        the next training row); rewound further, ``None``: the loop trains the steps again and validates when it
        reaches this step. Bounded by ``worker.actor.max_restarts``; any other error is raised unchanged."""
        trainer = self.trainer
        while True:
            step = trainer.step
            metrics = self.run(validate)
            if metrics is not None or trainer.step != step:
                return metrics
            dropped = dict(trainer._drain_pool_metrics([]))
            if isinstance(trainer.c.rollout, DrainsMetrics):
                dropped.update(trainer.c.rollout.drain_metrics())
            for key, value in dropped.items():
                if key.endswith("/restarts"):
                    trainer._carried[key] = trainer._carried.get(key, 0.0) + value
            logger.warning(
                "validation after step %d failed with the actor pool lost; restored, validating again (the failed "
                "pass's counters are not in its row: %s)",
                step,
                {k: v for k, v in dropped.items() if k.endswith(("/requests", "/restarts")) and v},
            )

    def _lost_workers(self, exc: BaseException) -> dict[int, str]:
        actor = self.actor
        if not isinstance(actor, RestartsWorkers):
            return {}
        try:
            return actor.lost_workers(self.ping_timeout_s)
        except Exception as probe_error:  # never hide the step's own error behind the probe's
            logger.warning("could not check the actor workers after %s: %s", describe(exc), describe(probe_error))
            return {}

    def _recover(self, lost: dict[int, str], exc: BaseException, what: str | None = None) -> None:
        trainer = self.trainer
        rank, cause = next(iter(lost.items()))
        failed_step = trainer.step + 1 if what is None else trainer.step
        logger.warning(
            "%s: actor worker(s) %s lost (%s); it failed with %s",
            what or f"step {failed_step}",
            sorted(lost),
            cause,
            describe(exc),
        )
        path = trainer.newest_resumable()
        if path is None and self.start is not None:
            self._restart_from_start(rank, cause, failed_step)
            return
        if path is None:
            raise WorkerLost(
                "actor pool",
                rank,
                f"rank {rank}: {cause}; no complete checkpoint to restore the sharded state from "
                f"(trainer.save_freq={trainer.cfg.trainer.save_freq})",
            ) from exc
        state = DriverState.read(path)
        trainer.c.actor.restart_workers(rank, cause)  # WorkerLost past worker.actor.max_restarts
        self.restarts += 1
        if isinstance(trainer.c.rollout, RebuildsWeightSync):
            trainer.c.rollout.reset_weight_sync()
        trainer.restore(path, state)
        logger.warning(
            "actor pool restarted (restart %d) and restored from %s: steps %d..%d are trained again",
            self.restarts,
            path,
            state.step + 1,
            failed_step,
        )

    def _restart_from_start(self, rank: int, cause: str, failed_step: int) -> None:
        """No checkpoint yet: fresh workers load ``worker.actor.model.model_path`` (the start weights, a fresh
        optimizer, the per-rank seeds — the pool's state before step 1), the driver goes back to :attr:`start`,
        and the engines get the start weights (a new weight-sync group: the sender is a new process)."""
        trainer, state = self.trainer, self.start
        assert state is not None
        trainer.c.actor.restart_workers(rank, cause)  # WorkerLost past worker.actor.max_restarts
        self.restarts += 1
        if isinstance(trainer.c.rollout, RebuildsWeightSync):
            trainer.c.rollout.reset_weight_sync()
        trainer.restore(None, state)
        logger.warning(
            "actor pool restarted (restart %d) from the start weights (%s; no checkpoint yet): steps 1..%d are "
            "trained again",
            self.restarts,
            trainer.cfg.worker.actor.model.model_path,
            failed_step,
        )
