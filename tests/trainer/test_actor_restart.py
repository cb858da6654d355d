"""A SIGKILLed actor (FSDP) worker during a step: the actor pool starts every rank again, restores model and
optimizer from the newest checkpoint, the driver rewinds its data position and RNG to it and trains the lost steps
again — the run completes with the data digests of a clean run and ``actor/restarts`` = 1. With
``worker.actor.max_restarts=0`` the same fault stops ``easyr1 train`` with one line and exit 1."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
from assets_testkit import write_sandbox_assets

from easyr1.config import load_config

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).parents[2] / "examples" / "sandbox.yaml"
STEPS = 4
KILL_AFTER_STEP = 2
"""The worker is killed during the step after this one (its checkpoint written): step 3 is trained twice."""


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return write_sandbox_assets(tmp_path_factory.mktemp("actor-restart"), train_rows=16)


def overrides(assets: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"data.train_files={assets / 'data' / 'train'}",
        f"data.val_files={assets / 'data' / 'val'}",
        f"worker.actor.model.model_path={assets / 'policy'}",
        f"trainer.output_dir={out}",
        f"trainer.max_steps={STEPS}",
        "data.rollout_batch_size=2",
        "data.max_response_length=24",
        "worker.actor.num_workers=2",  # a real FSDP world: the lost rank's shard is gone with it
        "worker.actor.global_batch_size=2",
        "worker.actor.micro_batch_size_per_device_for_update=2",
        "worker.actor.micro_batch_size_per_device_for_experience=4",
        "cluster.actor.num_cpus_per_worker=0.5",
        "worker.rollout.n=2",
        "trainer.logger=[file]",
        "trainer.val_freq=-1",
        "trainer.val_before_train=false",
        "telemetry.prometheus.enabled=false",
        "trainer.save_freq=1",
        "trainer.save_limit=2",
        *extra,
    ]


def step_rows(out: Path) -> list[dict]:
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if "data/digest" in r and "samples/total" in r]


def actor_workers() -> list[psutil.Process]:
    found = []
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if (proc.cmdline() or [""])[0].startswith("ray::ActorWorker"):
                found.append(proc)
    return found


class Killer(threading.Thread):
    """SIGKILLs one actor worker (the higher pid: rank 1) while it runs a call of the step after
    ``KILL_AFTER_STEP``."""

    def __init__(self, out: Path):
        super().__init__(daemon=True)
        self.out = out
        self.killed: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        end = time.monotonic() + 900
        while not self.done.is_set() and time.monotonic() < end:
            if (self.out / "checkpoints" / f"global_step_{KILL_AFTER_STEP}" / "COMPLETE").exists():
                busy = [p for p in actor_workers() if "." in p.cmdline()[0]]  # "ray::ActorWorker.<call>"
                if len(busy) >= 1 and not self.killed:
                    victim = max(actor_workers(), key=lambda p: p.pid)
                    victim.send_signal(signal.SIGKILL)
                    self.killed.append(victim.pid)
                    return
            time.sleep(0.02)


def test_a_killed_actor_rank_is_restored_from_the_checkpoint_and_the_run_matches_a_clean_one(assets, tmp_path):
    from easyr1.trainer.entry import run_training

    clean_dir = tmp_path / "clean"
    run_training(load_config(EXAMPLE, overrides(assets, clean_dir)))
    clean = [r["data/digest"] for r in step_rows(clean_dir)]
    assert len(clean) == STEPS

    faulty_dir = tmp_path / "faulty"
    killer = Killer(faulty_dir)
    killer.start()
    try:
        history = run_training(load_config(EXAMPLE, overrides(assets, faulty_dir)))
    finally:
        killer.done.set()
        killer.join()
    assert len(killer.killed) == 1, "no actor worker was killed during a step"
    rows = step_rows(faulty_dir)
    last = {r["step"]: r for r in rows}
    assert sorted(last) == list(range(1, STEPS + 1))
    assert [last[s]["data/digest"] for s in sorted(last)] == clean  # resume exactness
    assert sum(r.get("actor/restarts", 0.0) for r in rows) == 1
    assert [r["step"] for r in history] == list(range(1, STEPS + 1))  # the lost steps appear once, redone
    assert not psutil.pid_exists(killer.killed[0]) or psutil.Process(killer.killed[0]).status() == "zombie"
    assert actor_workers() == [] or all(p.status() == "zombie" for p in actor_workers())  # nothing left behind


def test_past_max_restarts_the_run_stops_with_one_line_and_exit_1(assets, tmp_path, capsys):
    from easyr1.trainer.entry import train_command

    out = tmp_path / "stopped"
    killer = Killer(out)
    killer.start()
    args = argparse.Namespace(config=str(EXAMPLE), overrides=overrides(assets, out, "worker.actor.max_restarts=0"))
    try:
        code = train_command(args)
    finally:
        killer.done.set()
        killer.join()
    assert len(killer.killed) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1
    assert "Traceback" not in err
    assert "easyr1 train stopped: actor pool: member 1 lost (rank 1: ActorDiedError" in err or (
        "easyr1 train stopped: actor pool: member 0 lost (rank 0:" in err
    ), err
    assert "restart limit reached after 0 restart(s) (worker.actor.max_restarts=0)" in err, err
