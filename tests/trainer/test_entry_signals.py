"""SIGTERM/SIGINT stop ``easyr1 train`` cleanly: the step in flight finishes and is checkpointed, Ray is shut down,
the exit code is 128 + the signal with one line and no traceback, and ``resume: auto`` continues the same data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from test_end_to_end import small_overrides

from easyr1.trainer.checkpoint import CheckpointManager
from easyr1.trainer.entry import ForcedStop, stop_on_signals

EXAMPLE = Path(__file__).parents[2] / "examples" / "sandbox.yaml"


def test_first_signal_sets_the_event_second_forces_and_handlers_come_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stop = threading.Event()
    with pytest.raises(ForcedStop), stop_on_signals(stop, grace_s=60) as signals:
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.time() + 5
        while not stop.is_set() and time.time() < deadline:
            time.sleep(0.01)
        assert stop.is_set() and signals.received == [signal.SIGTERM]
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the handler raises in the main thread before this ends
        pytest.fail("the second signal did not force the stop")
    assert signal.getsignal(signal.SIGTERM) is before


def test_grace_period_forces_the_stop() -> None:
    stop = threading.Event()
    start = time.monotonic()
    with pytest.raises(ForcedStop), stop_on_signals(stop, grace_s=0.5):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)
    assert time.monotonic() - start < 5


def _overrides(assets: Path, out: Path, *extra: str) -> list[str]:
    """The end-to-end tests' small run; checkpoints only where the stop writes one."""
    return small_overrides(assets, out, "trainer.save_freq=-1", *extra)


def _digests(out: Path) -> dict[int, str]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {r["step"]: r["data/digest"] for r in rows if "reward/mean" in r}


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_resume_continues(tmp_path: Path) -> None:
    from easyr1.models.tiny import build_tiny_policy
    from easyr1.sandbox.generator import write_sandbox_dataset

    assets = tmp_path / "assets"
    build_tiny_policy(assets / "policy", seed=0)
    write_sandbox_dataset(assets / "data" / "train", rows=16, seed=0, image_size=32)
    write_sandbox_dataset(assets / "data" / "val", rows=4, seed=0, image_size=32, split="val")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "easyr1", "train", str(EXAMPLE), *_overrides(assets, run, "trainer.max_steps=3")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    children: list[psutil.Process] = []
    try:
        deadline = time.time() + 400
        while not (run / "metrics.jsonl").exists() or 1 not in _digests(run):
            assert proc.poll() is None, "training ended before step 1 was logged"
            assert time.time() < deadline, "step 1 not logged in time"
            time.sleep(0.05)
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)  # as Kubernetes does: to the main process only
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-4000:]
    assert "stopped by SIGTERM" in stderr
    latest = CheckpointManager(run / "checkpoints").latest()
    assert latest is not None and latest.step >= 1
    stopped_at = latest.step
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [(p.pid, p.name()) for p in alive if p.is_running()]

    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    clean = tmp_path / "clean"
    clean_cmd = [
        sys.executable,
        "-m",
        "easyr1",
        "train",
        str(EXAMPLE),
        *_overrides(assets, clean, "trainer.max_steps=3"),
    ]
    assert subprocess.run(clean_cmd, capture_output=True, text=True, timeout=600).returncode == 0
    assert _digests(run) == _digests(clean)
    assert sorted(_digests(run)) == [1, 2, 3] and stopped_at < 3


@pytest.mark.slow
def test_ctrl_c_to_the_whole_process_group_stops_cleanly(tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches every process of the foreground group (the driver and Ray's workers), mid-step:
    still one line, exit 130, no traceback from any process, the step in flight checkpointed, no orphans."""
    from easyr1.models.tiny import build_tiny_policy
    from easyr1.sandbox.generator import write_sandbox_dataset

    assets = tmp_path / "assets"
    build_tiny_policy(assets / "policy", seed=0)
    write_sandbox_dataset(assets / "data" / "train", rows=16, seed=0, image_size=32)
    write_sandbox_dataset(assets / "data" / "val", rows=4, seed=0, image_size=32, split="val")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "easyr1", "train", str(EXAMPLE), *_overrides(assets, run, "trainer.max_steps=4")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    children: list[psutil.Process] = []
    try:
        deadline = time.time() + 400
        while not (run / "metrics.jsonl").exists() or 1 not in _digests(run):
            assert proc.poll() is None, "training ended before step 1 was logged"
            assert time.time() < deadline, "step 1 not logged in time"
            time.sleep(0.05)
        time.sleep(0.3)  # into step 2
        children = psutil.Process(proc.pid).children(recursive=True)
        os.killpg(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 128 + signal.SIGINT, output[-2000:]
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-4000:]
    assert "stopped by SIGINT" in output
    latest = CheckpointManager(run / "checkpoints").latest()
    assert latest is not None and latest.step == max(_digests(run))
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [(p.pid, p.name()) for p in alive if p.is_running()]
