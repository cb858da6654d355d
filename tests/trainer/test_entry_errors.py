"""``easyr1 train`` ends a run that lost a pool worker with one line and exit 1, not a traceback: a pool's
``WorkerLost`` (restart limit reached) and a lost actor worker (Ray's ``ActorDiedError``; FSDP ranks are not
restarted). Any other exception is not swallowed."""

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
