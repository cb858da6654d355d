"""``easyr1 train`` ends a run that lost a pool worker with one line and exit 1, not a traceback: a pool's
``WorkerLost`` (restart limit reached — the actor pool's too, past ``worker.actor.max_restarts`` or without a
checkpoint to restore) and a Ray ``ActorDiedError`` that no pool handled. Any other exception is not swallowed.
(``tests/trainer/test_actor_restart.py`` kills a real actor rank under ``easyr1 train``.)"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from ray.exceptions import ActorDiedError

import easyr1.trainer.entry as entry
from easyr1.pools import WorkerLost

EXAMPLE = Path(__file__).parents[2] / "examples" / "sandbox.yaml"


def run_with(monkeypatch, tmp_path, error: BaseException) -> int:
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(entry, "run_training", fail)
    monkeypatch.setattr("easyr1.trainer.preflight.preflight", lambda cfg, command: [])
    args = argparse.Namespace(config=str(EXAMPLE), overrides=[f"trainer.output_dir={tmp_path}"])
    return entry.train_command(args)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (WorkerLost("editor pool", 1, "restart limit reached"), "editor pool: member 1 lost (restart limit reached)"),
        (
            WorkerLost(
                "actor pool",
                1,
                "rank 1: ActorDiedError: The actor died; restart limit reached after 0 restart(s) "
                "(worker.actor.max_restarts=0)",
            ),
            "actor pool: member 1 lost (rank 1: ActorDiedError: The actor died; restart limit reached after 0 "
            "restart(s) (worker.actor.max_restarts=0))",
        ),
        (
            WorkerLost("actor pool", 0, "rank 0: ActorDiedError: gone; no complete checkpoint to restore"),
            "actor pool: member 0 lost (rank 0: ActorDiedError: gone; no complete checkpoint to restore)",
        ),
        (ActorDiedError(), "a pool worker was lost (ActorDiedError"),
    ],
)
def test_a_lost_worker_is_one_line_and_exit_1(monkeypatch, tmp_path, capsys, error, expected):
    assert run_with(monkeypatch, tmp_path, error) == 1
    err = capsys.readouterr().err
    assert expected in " ".join(err.split()) and "Traceback" not in err


def test_other_errors_are_not_swallowed(monkeypatch, tmp_path):
    with pytest.raises(ZeroDivisionError):
        run_with(monkeypatch, tmp_path, ZeroDivisionError("a bug"))
