"""Checkpoint atomicity: complete folders only, tracker last, kill -9 mid-save never yields a partial load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from easyr1.trainer.checkpoint import COMPLETE, TRACKER, CheckpointManager


def _write_actor(payload: str):
    def write(folder):
        (folder / "actor").mkdir()
        (folder / "actor" / "weights.txt").write_text(payload)

    return write


def test_save_and_latest(tmp_path):
    manager = CheckpointManager(tmp_path, save_limit=-1)
    assert manager.latest() is None
    for step in (5, 10):
        manager.save(step, _write_actor(f"w{step}"), {"step": step}, "a: 1\n")
    latest = manager.latest()
    assert latest is not None and latest.step == 10
    assert (latest.path / COMPLETE).is_file()
    assert (latest.path / "actor" / "weights.txt").read_text() == "w10"
    assert manager.read_driver_state(latest.path) == {"step": 10}
    assert (tmp_path / TRACKER).read_text() == "10"


def test_partial_folders_are_ignored_and_removed(tmp_path):
    manager = CheckpointManager(tmp_path)
    manager.save(3, _write_actor("ok"), {"step": 3}, "")
    partial = tmp_path / "global_step_6.tmp-999"
    (partial / "actor").mkdir(parents=True)
    incomplete = tmp_path / "global_step_9"  # a folder without the COMPLETE marker
    incomplete.mkdir()
    assert manager.latest().step == 3
    removed = manager.remove_partial()
    assert partial in removed and not partial.exists()


def test_tracker_behind_uses_newest_complete(tmp_path):
    manager = CheckpointManager(tmp_path)
    manager.save(1, _write_actor("a"), {"step": 1}, "")
    manager.save(2, _write_actor("b"), {"step": 2}, "")
    (tmp_path / TRACKER).write_text("1")  # as if killed between rename and tracker update
    assert manager.latest().step == 2


def test_prune_keeps_save_limit(tmp_path):
    manager = CheckpointManager(tmp_path, save_limit=2)
    for step in range(1, 6):
        manager.save(step, _write_actor(str(step)), {"step": step}, "")
    assert [c.step for c in manager.complete_checkpoints()] == [4, 5]


def test_kill_during_save_leaves_previous_checkpoint(tmp_path):
    manager = CheckpointManager(tmp_path)
    manager.save(1, _write_actor("first"), {"step": 1}, "")
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from easyr1.trainer.checkpoint import CheckpointManager

        def slow_write(folder):
            (folder / "actor").mkdir()
            (folder / "actor" / "weights.txt").write_text("half")
            Path({str(tmp_path / "started")!r}).write_text("1")
            time.sleep(60)

        CheckpointManager({str(tmp_path)!r}).save(2, slow_write, {{"step": 2}}, "")
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 60
        while not (tmp_path / "started").exists():
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    latest = manager.latest()
    assert latest.step == 1
    assert (latest.path / "actor" / "weights.txt").read_text() == "first"
    assert manager.remove_partial()
