"""An actor (FSDP) worker SIGKILLed during step 1, before any checkpoint exists (``trainer.save_freq=-1``): the
actor pool starts every rank again from ``worker.actor.model.model_path``, the driver goes back to its step-0 state
(loader position, RNG, KL coefficient) and trains from step 1 again — the run completes with the data digests of a
clean run and ``actor/restarts`` = 1, instead of stopping for want of a checkpoint."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
from assets_testkit import write_sandbox_assets
from test_actor_restart import actor_workers, overrides, step_rows

from easyr1.config import load_config

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).parents[2] / "examples" / "sandbox.yaml"
STEPS = 2


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return write_sandbox_assets(tmp_path_factory.mktemp("recovery-initial"), train_rows=8)


def run_overrides(assets: Path, out: Path) -> list[str]:
    # no checkpoint until the run ends: the first scheduled save would be step 100
    return [*overrides(assets, out), f"trainer.max_steps={STEPS}", "trainer.save_freq=100"]


class FirstUpdateKiller(threading.Thread):
    """SIGKILLs one actor worker while it runs step 1's ``update_policy`` (the first one of the run)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.killed: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        end = time.monotonic() + 600
        while not self.done.is_set() and time.monotonic() < end:
            workers = actor_workers()
            busy = [p for p in workers if "update_policy" in " ".join(p.cmdline())]
            if busy:
                victim = max(workers, key=lambda p: p.pid)
                victim.send_signal(signal.SIGKILL)
                self.killed.append(victim.pid)
                return
            time.sleep(0.01)


def test_an_actor_lost_before_the_first_checkpoint_restarts_from_the_start_weights(assets, tmp_path):
    from easyr1.trainer.entry import run_training

    clean_dir = tmp_path / "clean"
    run_training(load_config(EXAMPLE, run_overrides(assets, clean_dir)))
    clean = [r["data/digest"] for r in step_rows(clean_dir)]
    assert len(clean) == STEPS

    faulty_dir = tmp_path / "faulty"
    killer = FirstUpdateKiller()
    killer.start()
    started = time.monotonic()
    try:
        history = run_training(load_config(EXAMPLE, run_overrides(assets, faulty_dir)))
    finally:
        killer.done.set()
        killer.join()
    assert len(killer.killed) == 1, "no actor worker was killed in step 1's update"
    rows = step_rows(faulty_dir)
    assert [r["step"] for r in rows] == [1, 1, 2] or [r["step"] for r in rows] == [1, 2], rows
    last = {r["step"]: r for r in rows}
    assert [last[s]["data/digest"] for s in sorted(last)] == clean  # the same data sequence as the clean run
    assert sum(r.get("actor/restarts", 0.0) for r in rows) == 1
    assert [r["step"] for r in history] == list(range(1, STEPS + 1))
    checkpoints = sorted(p.name for p in (faulty_dir / "checkpoints").iterdir() if p.name.startswith("global_step"))
    assert checkpoints == [f"global_step_{STEPS}"]  # only the end-of-run save: the restart needed none
    state = json.loads((faulty_dir / "checkpoints" / f"global_step_{STEPS}" / "driver_state.json").read_text())
    assert state["step"] == STEPS
    assert not psutil.pid_exists(killer.killed[0]) or psutil.Process(killer.killed[0]).status() == "zombie"
    print(f"faulty run with the restart from the start weights: {time.monotonic() - started:.0f}s")
