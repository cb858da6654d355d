"""An actor worker lost while the run's last checkpoint is written (after the loop, outside any step): the pool
restarts, the driver rewinds to the newest complete checkpoint, trains the rewound steps again and writes the last
checkpoint then — as for a loss inside a step. ``GRPOTrainer.fit`` runs here over the recovery fakes of
``test_recovery.py`` (no Ray; the real pool restart: ``test_actor_restart.py``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from test_recovery import Actor, Trainer, checkpoint, failing

from easyr1.pools import WorkerLost
from easyr1.trainer.grpo import GRPOTrainer
from easyr1.trainer.recovery import ActorRecovery


def test_save_returns_false_after_a_lost_worker_and_raises_other_errors_unchanged(tmp_path):
    path = checkpoint(tmp_path, 3)
    trainer = Trainer(Actor(lost={0: "ActorDiedError: pid 5"}), path, step=4)
    recovery = ActorRecovery(trainer)
    assert recovery.save(failing(OSError("gloo: Connection reset by peer"))) is False
    assert trainer.step == 3 and [p for p, _ in trainer.restored] == [path]
    written = []
    assert recovery.save(lambda: written.append(trainer.step)) is True and written == [3]
    healthy = ActorRecovery(Trainer(Actor(lost={}), path, step=4))
    with pytest.raises(OSError, match="No space left"):
        healthy.save(failing(OSError(28, "No space left on device")))


class Checkpoints:
    """Checkpoint folders as ``GRPOTrainer.fit`` sees them: the newest written step."""

    def __init__(self, steps: list[int]):
        self.steps = steps

    def latest(self):
        return SimpleNamespace(step=self.steps[-1], path=Path(f"global_step_{self.steps[-1]}")) if self.steps else None


def fitting_trainer(tmp_path: Path, *, total: int, save_freq: int, lose_on_saves: set[int], max_restarts: int = 2):
    """A ``GRPOTrainer`` whose step, checkpoint writer and actor pool are fakes: each step counts, every
    ``save_freq``-th step writes a checkpoint, and the ``n``-th forced (last) save in ``lose_on_saves`` fails with
    the actor pool lost."""
    actor = Actor(lost={1: "ActorDiedError: pid 77 (SIGKILL)"}, max_restarts=max_restarts)
    fake = Trainer(actor, None, step=0)
    trainer = object.__new__(GRPOTrainer)
    trainer.cfg = SimpleNamespace(
        trainer=SimpleNamespace(val_before_train=False, val_only=False, val_freq=0, save_freq=save_freq),
        worker=fake.cfg.worker,
    )
    trainer.c, trainer.kl_ctrl, trainer.best_val = fake.c, fake.kl_ctrl, fake.best_val
    trainer.step = 0
    trainer.checkpoints = Checkpoints([])
    trainer.pipe = SimpleNamespace(close=lambda: None)
    trainer.total_steps = lambda: total
    trained: list[int] = []
    forced: list[int] = []

    def train_step():
        trainer.step += 1
        trained.append(trainer.step)
        if trainer.step % save_freq == 0:
            trainer.checkpoints.steps.append(trainer.step)
        return {"step": trainer.step, "reward/mean": 0.0}

    def maybe_save(step: int, force: bool = False) -> bool:
        assert force and step == trainer.step
        forced.append(step)
        if len(forced) in lose_on_saves:
            raise RuntimeError("gloo: Connection closed by peer")  # the writer's collective saw the rank die
        trainer.checkpoints.steps.append(step)
        return True

    def newest_resumable():
        latest = trainer.checkpoints.latest()
        if latest is None:
            return None
        folder = tmp_path / f"global_step_{latest.step}"
        return folder if folder.exists() else checkpoint(tmp_path, latest.step)

    def restore(path, state):
        trainer.step = state.step

    trainer.train_step, trainer._maybe_save = train_step, maybe_save
    trainer.newest_resumable, trainer.restore = newest_resumable, restore
    trainer.recovery = ActorRecovery(trainer)
    return trainer, actor, trained, forced


def test_a_lost_actor_during_the_last_save_trains_the_rewound_steps_again_then_saves(tmp_path):
    trainer, actor, trained, forced = fitting_trainer(tmp_path, total=5, save_freq=2, lose_on_saves={1})
    result = trainer.fit()
    assert trained == [1, 2, 3, 4, 5, 5]  # rewound to step 4's checkpoint, step 5 trained again
    assert forced == [5, 5] and trainer.checkpoints.steps == [2, 4, 5]
    assert actor.pool_restarts == 1 and result.step == 5 and result.stopped is False
    assert [row["step"] for row in result] == [1, 2, 3, 4, 5]  # the lost step's row is not kept twice


def test_a_last_save_that_keeps_losing_the_actor_stops_at_the_restart_limit(tmp_path):
    trainer, actor, trained, forced = fitting_trainer(
        tmp_path, total=3, save_freq=2, lose_on_saves={1, 2, 3}, max_restarts=1
    )
    with pytest.raises(WorkerLost, match="restart limit"):
        trainer.fit()
    assert trained == [1, 2, 3, 3] and forced == [3, 3] and actor.pool_restarts == 1
    assert trainer.checkpoints.steps == [2]  # the complete checkpoint is left as it was
