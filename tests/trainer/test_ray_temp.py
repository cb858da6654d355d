"""Ray's temp folder: in the run folder when Ray's socket paths fit under it, else a short folder in the system
temp folder that is removed when the run closes (and by the next run after a kill) — never left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from test_end_to_end import assets, small_config  # noqa: F401 (assets is a fixture)

from easyr1.trainer import components as comps_module
from easyr1.trainer.components import (
    RAY_SOCKET_SUFFIX,
    SOCKET_PATH_MAX,
    ray_temp_dir,
    remove_stale_ray_temp,
)
from easyr1.trainer.entry import run_training


def short_dir(length: int) -> Path:
    """A new folder whose absolute path is exactly ``length`` bytes (in /tmp)."""
    base = Path(tempfile.mkdtemp(prefix="e", dir="/tmp"))
    path = base / ("x" * (length - len(str(base)) - 1))
    path.mkdir()
    return path


def test_short_run_folder_keeps_ray_inside(tmp_path):
    run = short_dir(SOCKET_PATH_MAX - RAY_SOCKET_SUFFIX - len("/ray"))
    try:
        folder, remove = ray_temp_dir(run)
        assert folder == run / "ray" and not remove and folder.is_dir()
    finally:
        subprocess.run(["rm", "-rf", str(run.parent)], check=True)


def test_deep_run_folder_falls_back_to_a_short_folder(tmp_path):
    deep = tmp_path / ("d" * 80) / "run"
    folder, remove = ray_temp_dir(deep)
    try:
        assert remove and folder.is_dir() and folder.name.startswith(f"easyr1-ray-{os.getpid()}-")
        longest = len(str(folder).encode()) + RAY_SOCKET_SUFFIX
        assert longest <= SOCKET_PATH_MAX
        assert not (deep / "ray").exists()
    finally:
        folder.rmdir()


def test_stale_folders_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f"easyr1-ray-{dead_pid}-abc123"
    live = tmp_path / f"easyr1-ray-{os.getpid()}-def456"
    other = tmp_path / "easyr1-ray-q1w2e3"  # an older run's name without a PID: not ours to judge
    for folder in (stale, live, other):
        folder.mkdir()
    assert remove_stale_ray_temp(str(tmp_path)) == [str(stale)]
    assert not stale.exists() and live.exists() and other.exists()


@pytest.mark.slow
def test_ray_starts_at_the_longest_allowed_temp_folder_and_refuses_a_longer_one():
    """Measures the suffix: Ray must start with a temp folder of SOCKET_PATH_MAX - RAY_SOCKET_SUFFIX bytes; one
    10 bytes longer than Ray's real suffix allows is refused (why the fallback exists)."""
    code = (
        "import os, sys, ray; os.environ['RAY_AUTH_MODE'] = 'disabled'\n"
        "try:\n    ray.init(_temp_dir=sys.argv[1], num_cpus=1, include_dashboard=False)\n"
        "except OSError as exc:\n    print('REFUSED', exc); sys.exit(3)\n"
        "ray.shutdown(); print('STARTED')\n"
    )
    ok = short_dir(SOCKET_PATH_MAX - RAY_SOCKET_SUFFIX)
    too_long = short_dir(SOCKET_PATH_MAX - RAY_SOCKET_SUFFIX + 20)
    try:
        started = subprocess.run([sys.executable, "-c", code, str(ok)], capture_output=True, text=True, timeout=180)
        assert "STARTED" in started.stdout, started.stdout + started.stderr
        sockets = [p for p in ok.rglob("*") if p.is_socket()]
        assert sockets and max(len(str(p).encode()) for p in sockets) <= SOCKET_PATH_MAX
        refused = subprocess.run(
            [sys.executable, "-c", code, str(too_long)], capture_output=True, text=True, timeout=180
        )
        assert refused.returncode == 3 and "AF_UNIX path length" in refused.stdout
    finally:
        subprocess.run(["rm", "-rf", str(ok.parent), str(too_long.parent)], check=True)


def _spy(monkeypatch) -> list[tuple[Path, bool]]:
    seen: list[tuple[Path, bool]] = []
    real = comps_module.ray_temp_dir

    def spy(run_dir):
        seen.append(real(run_dir))
        return seen[-1]

    monkeypatch.setattr(comps_module, "ray_temp_dir", spy)
    return seen


@pytest.mark.slow
def test_training_in_a_deep_folder_leaves_no_ray_temp_folder(assets, tmp_path, monkeypatch):  # noqa: F811
    seen = _spy(monkeypatch)
    run_training(small_config(assets, tmp_path / ("deep" * 20) / "run", "trainer.max_steps=1"))
    ((folder, remove),) = seen
    assert remove  # the run folder was too deep: the short fallback was used ...
    assert not folder.exists()  # ... and removed when the run closed


@pytest.mark.slow
def test_training_in_a_short_folder_keeps_ray_in_the_run_folder(assets, monkeypatch):  # noqa: F811
    seen = _spy(monkeypatch)
    run = short_dir(30)
    try:
        run_training(small_config(assets, run, "trainer.max_steps=1"))
        ((folder, remove),) = seen
        assert folder == run / "ray" and not remove
        assert list(folder.glob("session_*/logs")), "Ray did not use the run folder"
    finally:
        subprocess.run(["rm", "-rf", str(run.parent)], check=True)


@pytest.mark.slow
def test_sft_in_a_deep_folder_leaves_no_ray_temp_folder(assets, tmp_path, monkeypatch):  # noqa: F811
    from easyr1.trainer.sft import run_sft

    seen = _spy(monkeypatch)
    cfg = small_config(assets, tmp_path / ("deep" * 20) / "run", "sft.max_steps=1")
    run_sft(cfg)
    ((folder, remove),) = seen
    assert remove and not folder.exists()
