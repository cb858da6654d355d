"""``ActorRecovery.validate``'s decisions, without Ray: a validation pass that loses the actor pool is run again once
the pool is restored to this step's checkpoint (the failed pass's counters left out of its row, its restarts carried
to the next training row); rewound to an older checkpoint it returns ``None`` (the loop trains the steps again);
past the limit ``WorkerLost`` goes up; an error with every worker answering is raised unchanged.
(The real thing: ``test_validation_faults.py``.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_recovery import Actor, Trainer, checkpoint, failing

from easyr1.pools import WorkerLost
from easyr1.trainer.recovery import ActorRecovery


class Rollout:
    """The rollout pool's counters: an engine restarted in the failed pass."""

    def __init__(self):
        self.restarts = 0
        self.resets = 0

    def reset_weight_sync(self) -> None:
        self.resets += 1

    def sync_weights(self, actor) -> dict[str, float]:
        return {}

    def drain_metrics(self) -> dict[str, float]:
        value, self.restarts = self.restarts, 0
        return {"rollout/restarts": float(value)}


class ValTrainer(Trainer):
    """The fake driver with pool counters (``_drain_pool_metrics``) and carried restarts (``_carried``)."""

    def __init__(self, actor: Actor, checkpoint: Path | None, step: int):
        super().__init__(actor, checkpoint, step)
        self.c.rollout = Rollout()
        self.pool_counts = {"editor/requests": 0.0, "editor/restarts": 0.0}
        self._carried: dict[str, float] = {}

    def _drain_pool_metrics(self, judged) -> dict[str, float]:
        drained, self.pool_counts = self.pool_counts, {k: 0.0 for k in self.pool_counts}
        return drained


def test_a_pass_that_lost_the_actor_is_run_again_after_the_restore_and_counts_its_calls_once(tmp_path):
    actor = Actor(lost={0: "ActorDiedError: pid 5"})
    trainer = ValTrainer(actor, checkpoint(tmp_path, 3), step=3)  # validation after step 3, checkpointed
    recovery = ActorRecovery(trainer)
    passes = []

    def validate() -> dict[str, float]:
        passes.append(trainer.step)
        trainer.pool_counts["editor/requests"] += 4
        if len(passes) == 1:  # the first pass: an engine restarted, then its weights' source was gone
            trainer.c.rollout.restarts += 1
            trainer.pool_counts["editor/restarts"] += 1
            raise RuntimeError("RayTaskError(ActorDiedError): HFRolloutEngine.update_weights()")
        counts = trainer._drain_pool_metrics([])
        return {"val/reward/mean": 1.0, "val/editor/requests": counts["editor/requests"]}

    metrics = recovery.validate(validate)
    assert passes == [3, 3] and trainer.step == 3
    assert metrics == {"val/reward/mean": 1.0, "val/editor/requests": 4.0}  # the redone pass's calls only
    assert trainer._carried == {"editor/restarts": 1.0, "rollout/restarts": 1.0}  # for the next training row
    assert [c[0] for c in actor.calls] == ["lost_workers", "restart_workers"]
    assert trainer.c.rollout.resets == 1


def test_rewound_past_this_step_the_pass_is_not_run_again_here(tmp_path):
    actor = Actor(lost={1: "ActorDiedError: pid 6"})
    trainer = ValTrainer(actor, checkpoint(tmp_path, 2), step=4)  # the newest checkpoint is older
    passes = []

    def validate() -> dict[str, float]:
        passes.append(trainer.step)
        raise RuntimeError("lost")

    assert ActorRecovery(trainer).validate(validate) is None
    assert passes == [4] and trainer.step == 2  # the loop trains 3 and 4 again and validates at 4 then


def test_past_the_actor_restart_limit_worker_lost_goes_up(tmp_path):
    actor = Actor(lost={0: "ActorDiedError: pid 7"}, max_restarts=1)
    trainer = ValTrainer(actor, checkpoint(tmp_path, 3), step=3)
    with pytest.raises(WorkerLost, match=r"actor pool: member 0 lost \(ActorDiedError: pid 7; restart limit"):
        ActorRecovery(trainer).validate(failing(RuntimeError("lost again")))
    assert actor.pool_restarts == 1  # one restore, then the limit


def test_an_error_with_every_worker_answering_is_raised_unchanged(tmp_path):
    trainer = ValTrainer(Actor(lost={}), checkpoint(tmp_path, 3), step=3)
    with pytest.raises(ZeroDivisionError):
        ActorRecovery(trainer).validate(failing(ZeroDivisionError("a bug in scoring")))
    assert trainer.restored == []
