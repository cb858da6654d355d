"""A worker lost while validation runs (issue 21): a SIGKILLed rollout engine or editor replica during the
validation pass after a training step. The pools' own restart logic covers validation: the rollout pool starts a
fresh engine, loads the weights of the last sync into it (from the actor pool) and generates its share again with
the same seeds; the editor pool replaces the replica and sends the lost chunk again. The run completes, and its
validation row equals a clean run's — the same reward and the same counts (each edit/judge call counted once),
with the restart counted in it. Past the rollout pool's limit the run stops with one line and exit 1, and no
validation row is written (a failed validation is never logged as a number)."""

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
ENGINE = "ray::HFRolloutEngine"
REPLICA = "ray::EditorReplica"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return write_sandbox_assets(tmp_path_factory.mktemp("validation-faults"), train_rows=8)


def overrides(assets: Path, out: Path, *extra: str) -> list[str]:
    """One training step (its weights synced into the engine), then one validation pass."""
    return [
        f"data.train_files={assets / 'data' / 'train'}",
        f"data.val_files={assets / 'data' / 'val'}",
        f"worker.actor.model.model_path={assets / 'policy'}",
        f"trainer.output_dir={out}",
        "trainer.max_steps=1",
        "data.rollout_batch_size=2",
        "data.max_response_length=24",
        "worker.actor.num_workers=1",
        "worker.actor.global_batch_size=2",
        "worker.actor.micro_batch_size_per_device_for_update=2",
        "worker.actor.micro_batch_size_per_device_for_experience=4",
        "cluster.actor.num_cpus_per_worker=0.5",
        "worker.rollout.n=2",
        "worker.reward.missing_re_edit=fallback_instruction",  # every sample is edited: the editor is used
        "worker.image_edit.num_replicas=2",  # the editor as a Ray pool of two replicas
        "worker.image_edit.batch_size=1",  # every replica gets a chunk
        "cluster.editor.num_cpus_per_worker=0.5",
        "trainer.logger=[file]",
        "trainer.val_before_train=false",
        "trainer.val_freq=1",
        "telemetry.prometheus.enabled=false",
        "trainer.save_freq=1",
        *extra,
    ]


def metric_rows(out: Path) -> list[dict]:
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def val_rows(out: Path) -> list[dict]:
    return [r for r in metric_rows(out) if "val/reward/mean" in r]


def ray_workers(title: str) -> list[psutil.Process]:
    """This test's Ray workers whose process title starts with ``title`` (``ray::Class`` or ``ray::Class.method``
    while it runs a call)."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if (proc.cmdline() or [""])[0].startswith(title):
                found.append(proc)
    return found


class Killer(threading.Thread):
    """Once step 1's training row is logged (validation comes next), waits until the rollout engine runs
    validation's ``generate`` and then SIGKILLs one process titled by each of ``victims`` (the engine itself,
    mid-call; an editor replica, found dead by validation's edits; an actor worker, found dead when a fresh engine
    asks the actor pool for the weights)."""

    def __init__(self, out: Path, *victims: str):
        super().__init__(daemon=True)
        self.out, self.victims = out, victims
        self.killed: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        end = time.monotonic() + 900
        while not self.done.is_set() and time.monotonic() < end:
            trained = any("samples/total" in r and "val/reward/mean" not in r for r in metric_rows(self.out))
            if trained and ray_workers(f"{ENGINE}.generate"):
                targets = [min(found, key=lambda p: p.pid) for v in self.victims if (found := ray_workers(v))]
                if len(targets) == len(self.victims):
                    for victim in targets:
                        victim.send_signal(signal.SIGKILL)
                        self.killed.append(victim.pid)
                    return
            time.sleep(0.02)


def run_with_kill(out: Path, args: list[str], *victims: str):
    from easyr1.trainer.entry import run_training

    killer = Killer(out, *victims)
    killer.start()
    try:
        history = run_training(load_config(EXAMPLE, args))
    finally:
        killer.done.set()
        killer.join()
    assert len(killer.killed) == len(victims), f"not every one of {victims} was killed during validation"
    return history, killer.killed


COUNTS = (
    "val/samples/total",
    "val/samples/valid",
    "val/reward/count",
    "val/reward/judged_count",
    "val/editor/requests",
    "val/editor/edits/ok",
    "val/editor/edits/failed",
)


@pytest.fixture(scope="module")
def clean(assets, tmp_path_factory) -> dict:
    from easyr1.trainer.entry import run_training

    out = tmp_path_factory.mktemp("clean")
    run_training(load_config(EXAMPLE, overrides(assets, out)))
    [row] = val_rows(out)
    return row


def check_against_clean(row: dict, clean: dict) -> None:
    assert row["val/data/digest"] == clean["val/data/digest"]
    assert row["val/reward/mean"] == pytest.approx(clean["val/reward/mean"], abs=1e-9)  # the same outputs
    for key in COUNTS:  # the redone work is counted once
        assert key in row and row[key] == clean[key], (key, row.get(key), clean.get(key))


def dead(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_rollout_engine_killed_during_validation_is_replaced_and_validation_completes(
    assets, tmp_path, clean, caplog
):
    out = tmp_path / "engine"
    with caplog.at_level("INFO", logger="easyr1.rollout.pool"):
        history, [pid] = run_with_kill(out, overrides(assets, out), f"{ENGINE}.generate")
    # the fresh engine got step 1's weights from the actor pool (the last sync), not the start weights
    assert "rollout engine 0 restarted and loaded the latest weights" in caplog.text, caplog.text
    assert [r["step"] for r in history] == [1]
    [row] = val_rows(out)  # one validation row, a number, equal to the clean run's
    check_against_clean(row, clean)
    assert row["val/rollout/restarts"] == 1 and clean["val/rollout/restarts"] == 0
    assert dead(pid) and ray_workers("ray::") == []


def test_an_editor_replica_killed_during_validation_is_replaced_and_validation_completes(assets, tmp_path, clean):
    out = tmp_path / "editor"
    history, [pid] = run_with_kill(out, overrides(assets, out), REPLICA)
    assert [r["step"] for r in history] == [1]
    [row] = val_rows(out)
    check_against_clean(row, clean)
    assert row["val/editor/restarts"] == 1 and clean["val/editor/restarts"] == 0
    assert dead(pid) and ray_workers("ray::") == []


def test_an_actor_worker_lost_with_the_engine_during_validation_restores_the_pool_and_validates_again(
    assets, tmp_path, clean, caplog
):
    """The fresh engine needs the last sync's weights from the actor pool, whose worker is gone too: the
    validation pass fails, ``ActorRecovery`` restarts the actor pool from step 1's checkpoint (the same weights),
    syncs them into the engines and runs the pass again; its row counts each edit/judge call once."""
    out = tmp_path / "actor"
    with caplog.at_level("WARNING"):
        history, pids = run_with_kill(out, overrides(assets, out), f"{ENGINE}.generate", "ray::ActorWorker")
    assert [r["step"] for r in history] == [1]
    assert "validation after step 1 failed with the actor pool lost; restored, validating again" in caplog.text
    assert "actor pool restarted (restart 1) and restored from" in caplog.text, caplog.text
    [row] = val_rows(out)
    check_against_clean(row, clean)
    assert all(dead(pid) for pid in pids) and ray_workers("ray::") == []


def test_past_the_rollout_restart_limit_validation_stops_the_run_with_one_line(assets, tmp_path, capsys):
    from easyr1.trainer.entry import train_command

    out = tmp_path / "stopped"
    killer = Killer(out, f"{ENGINE}.generate")
    killer.start()
    args = argparse.Namespace(config=str(EXAMPLE), overrides=overrides(assets, out, "worker.rollout.max_restarts=0"))
    try:
        code = train_command(args)
    finally:
        killer.done.set()
        killer.join()
    assert len(killer.killed) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1 and "Traceback" not in err, err
    assert "easyr1 train stopped: rollout pool: member 0 lost (engine 0: ActorDiedError" in err, err
    assert "restart limit reached after 0 restart(s) (worker.rollout.max_restarts=0)" in err, err
    assert val_rows(out) == []  # no validation number was made up for the failed pass
    assert [r["step"] for r in metric_rows(out) if "samples/total" in r] == [1]
    assert ray_workers("ray::") == []
