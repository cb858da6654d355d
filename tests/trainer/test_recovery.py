"""``ActorRecovery``'s decisions, without Ray: a step error with every actor worker answering is raised unchanged;
a lost worker restarts the pool, rebuilds the weight-sync group and restores the newest checkpoint; past the limit or
without a checkpoint, ``WorkerLost`` names the rank and the cause. (The real thing: ``test_actor_restart.py``.)"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from easyr1.pools import WorkerLost
from easyr1.trainer.checkpoint import DriverState
from easyr1.trainer.recovery import ActorRecovery, RebuildsWeightSync, RestartsWorkers
from easyr1.trainer.rng import restore_rng


class Actor:
    """Records what the recovery asks of the actor pool; ``lost`` is what ``lost_workers`` answers."""

    def __init__(self, lost: dict[int, str], max_restarts: int = 2):
        self.lost = lost
        self.max_restarts = max_restarts
        self.calls: list[tuple] = []
        self.pool_restarts = 0
        self.reported = 0

    def lost_workers(self, timeout_s: float = 60.0) -> dict[int, str]:
        self.calls.append(("lost_workers",))
        return dict(self.lost)

    def restart_workers(self, rank: int, cause: str) -> None:
        if self.pool_restarts >= self.max_restarts:
            raise WorkerLost("actor pool", rank, f"{cause}; restart limit reached")
        self.pool_restarts += 1
        self.calls.append(("restart_workers", rank, cause))

    def drain_metrics(self) -> dict[str, float]:
        value, self.reported = self.pool_restarts - self.reported, self.pool_restarts
        return {"actor/restarts": float(value)}


class Rollout:
    def __init__(self):
        self.resets = 0
        self.synced: list[object] = []

    def reset_weight_sync(self) -> None:
        self.resets += 1

    def sync_weights(self, actor) -> dict[str, float]:
        self.synced.append(actor)
        return {"rollout/sync_time_s": 0.1, "rollout/restarts": 0.0}


class Loader:
    def __init__(self):
        self.position = 0
        self.loaded: list[dict] = []

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.loaded.append(state)
        self.position = state["position"]


class Trainer:
    def __init__(self, actor: Actor, checkpoint: Path | None, step: int = 5):
        self.c = SimpleNamespace(actor=actor, rollout=Rollout(), train_loader=Loader())
        self.cfg = SimpleNamespace(
            trainer=SimpleNamespace(save_freq=1),
            worker=SimpleNamespace(actor=SimpleNamespace(model=SimpleNamespace(model_path="/policy"))),
        )
        self.step = step
        self.best_val = -math.inf
        self.kl_ctrl = SimpleNamespace(value=0.1)
        self.checkpoint = checkpoint
        self.restored: list[tuple[Path | None, DriverState]] = []

    def newest_resumable(self) -> Path | None:
        return self.checkpoint

    def restore(self, path: Path | None, state: DriverState) -> None:
        self.restored.append((path, state))
        self.step = state.step


def checkpoint(tmp_path: Path, step: int) -> Path:
    folder = tmp_path / f"global_step_{step}"
    folder.mkdir()
    (folder / "driver_state.json").write_text(json.dumps(DriverState(step=step, loader={"position": 6}).to_json()))
    return folder


def failing(exc: BaseException):
    def step():
        raise exc

    return step


def test_the_fakes_are_what_the_recovery_checks_for():
    assert isinstance(Actor({}), RestartsWorkers) and isinstance(Rollout(), RebuildsWeightSync)


def test_an_error_with_every_worker_answering_is_raised_unchanged(tmp_path):
    actor = Actor(lost={})
    trainer = Trainer(actor, checkpoint(tmp_path, 3))
    with pytest.raises(ZeroDivisionError):
        ActorRecovery(trainer).run(failing(ZeroDivisionError("a bug")))
    assert actor.calls == [("lost_workers",)] and trainer.restored == []


def test_another_pools_worker_lost_is_not_probed(tmp_path):
    actor = Actor(lost={1: "dead"})
    with pytest.raises(WorkerLost):
        ActorRecovery(Trainer(actor, checkpoint(tmp_path, 3))).run(failing(WorkerLost("rollout pool", 0, "x")))
    assert actor.calls == []


def test_a_lost_worker_restarts_the_pool_and_rewinds_to_the_newest_checkpoint(tmp_path):
    actor = Actor(lost={1: "ActorDiedError: pid 42"})
    path = checkpoint(tmp_path, 3)
    trainer = Trainer(actor, path, step=5)
    recovery = ActorRecovery(trainer)
    assert recovery.run(failing(RuntimeError("gloo: Connection closed by peer"))) is None
    assert actor.calls == [("lost_workers",), ("restart_workers", 1, "ActorDiedError: pid 42")]
    assert trainer.c.rollout.resets == 1
    ((restored_path, state),) = trainer.restored
    assert restored_path == path and state.step == 3 and state.loader == {"position": 6} and trainer.step == 3
    assert recovery.metrics() == {"actor/restarts": 1.0} and recovery.metrics() == {"actor/restarts": 0.0}
    assert recovery.run(lambda: {"step": 4}) == {"step": 4}


def test_past_the_limit_the_pools_worker_lost_goes_up(tmp_path):
    actor = Actor(lost={0: "ActorDiedError: pid 7"}, max_restarts=0)
    trainer = Trainer(actor, checkpoint(tmp_path, 2))
    with pytest.raises(WorkerLost, match=r"actor pool: member 0 lost \(ActorDiedError: pid 7; restart limit"):
        ActorRecovery(trainer).run(failing(RuntimeError("step failed")))
    assert trainer.restored == []


def test_a_resumed_run_without_a_checkpoint_left_stops_naming_the_rank_and_the_cause():
    """A run that did not start at step 0 has no start state to go back to (its checkpoint is gone or damaged)."""
    actor = Actor(lost={1: "ActorDiedError: pid 9"})
    trainer = Trainer(actor, None, step=4)
    with pytest.raises(
        WorkerLost,
        match=r"actor pool: member 1 lost \(rank 1: ActorDiedError: pid 9; no complete "
        r"checkpoint to restore the sharded state from \(trainer.save_freq=1\)\)",
    ):
        ActorRecovery(trainer).run(failing(RuntimeError("step 5 failed")))
    assert [c[0] for c in actor.calls] == ["lost_workers"]  # nothing restarted


def test_before_the_first_checkpoint_the_pool_restarts_from_the_start_weights_and_the_driver_rewinds_to_step_0():
    import torch

    actor = Actor(lost={1: "ActorDiedError: pid 9"})
    trainer = Trainer(actor, None, step=0)
    recovery = ActorRecovery(trainer)
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)

    def step_one():  # consumes data, moves the RNG and the KL coefficient, then loses the actor
        trainer.c.train_loader.position = 2
        torch.rand(3)
        trainer.kl_ctrl.value = 0.5
        trainer.best_val = 0.9
        raise RuntimeError("gloo: Connection closed by peer")

    assert recovery.run(step_one) is None
    assert actor.calls == [("lost_workers",), ("restart_workers", 1, "ActorDiedError: pid 9")]
    # the driver goes back to its state before step 1 through GRPOTrainer.restore(None, ...): no checkpoint to load
    [(path, start)] = trainer.restored
    assert path is None and trainer.step == 0 and start.step == 0
    assert start.loader == {"position": 0} and start.kl_coef == 0.1 and start.best_val is None
    restore_rng(start.rng)
    assert torch.equal(torch.rand(3), expected_draw)  # the saved RNG is step 1's start
    assert trainer.c.rollout.resets == 1  # a new weight-sync group: the sender is a new process
    assert recovery.metrics() == {"actor/restarts": 1.0}
    # a second loss before any checkpoint goes back to the same start
    trainer.c.train_loader.position = 5
    assert recovery.run(failing(RuntimeError("again"))) is None
    assert [p for p, _ in trainer.restored] == [None, None] and trainer.restored[-1][1] is start


def test_once_a_checkpoint_exists_it_is_preferred_over_the_start(tmp_path):
    actor = Actor(lost={0: "ActorDiedError: pid 3"})
    trainer = Trainer(actor, None, step=0)
    recovery = ActorRecovery(trainer)
    assert recovery.run(lambda: {"step": 1}) == {"step": 1}  # the start state is taken before step 1
    trainer.step, trainer.checkpoint = 2, checkpoint(tmp_path, 2)
    assert recovery.run(failing(RuntimeError("step 3 failed"))) is None
    assert [p for p, _ in trainer.restored] == [trainer.checkpoint] and trainer.c.train_loader.loaded == []
