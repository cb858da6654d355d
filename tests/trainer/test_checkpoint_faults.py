"""Disk faults at save time and damaged checkpoints at resume: a failed save leaves the previous checkpoint intact
and nothing that resume would pick; resume falls back from a damaged newest checkpoint to the previous one."""

from __future__ import annotations

import errno
import json
import logging
from pathlib import Path

import pytest

from easyr1.trainer import checkpoint as ckpt
from easyr1.trainer.checkpoint import COMPLETE, MANIFEST, TRACKER, CheckpointManager, CheckpointWriteError


def _write_actor(payload: str):
    def write(folder: Path) -> None:
        (folder / "actor").mkdir()
        (folder / "actor" / "weights.bin").write_bytes(payload.encode() * 100)

    return write


def _only_step_folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir())


def test_manifest_lists_every_file_with_size_and_sha256(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path)
    path = manager.save(1, _write_actor("a"), {"step": 1}, "x: 1\n")
    files = json.loads((path / MANIFEST).read_text())["files"]
    assert set(files) == {"actor/weights.bin", "driver_state.json", "config.yaml"}
    assert files["actor/weights.bin"]["size"] == 100
    assert manager.verify(path) is None


def test_enospc_during_the_actor_write_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path)
    manager.save(1, _write_actor("a"), {"step": 1}, "")

    def full_disk(folder: Path) -> None:
        (folder / "actor").mkdir()
        (folder / "actor" / "part").write_bytes(b"x" * 10)
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / "actor" / "weights.bin"))

    with pytest.raises(CheckpointWriteError) as info:
        manager.save(2, full_disk, {"step": 2}, "")
    message = str(info.value)
    assert "\n" not in message
    assert "step 2" in message and "ENOSPC" in message and "global_step_1" in message
    assert _only_step_folders(tmp_path) == ["global_step_1"]  # the temporary folder is gone
    assert manager.latest().step == 1
    assert (tmp_path / TRACKER).read_text() == "1"
    assert manager.read_driver_state(manager.latest().path) == {"step": 1}


def test_enospc_while_writing_the_driver_state(tmp_path: Path, monkeypatch) -> None:
    manager = CheckpointManager(tmp_path)
    manager.save(1, _write_actor("a"), {"step": 1}, "")
    real = ckpt._write_text

    def failing(path: Path, text: str, *, atomic: bool = False) -> None:
        if path.name == "driver_state.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, text, atomic=atomic)

    monkeypatch.setattr(ckpt, "_write_text", failing)
    with pytest.raises(CheckpointWriteError, match="ENOSPC"):
        manager.save(2, _write_actor("b"), {"step": 2}, "")
    assert _only_step_folders(tmp_path) == ["global_step_1"]
    assert [c.step for c in manager.complete_checkpoints()] == [1]


def test_unwritable_checkpoint_folder_fails_with_one_line(tmp_path: Path, monkeypatch) -> None:
    # a read-only folder, simulated (tests may run as root, which ignores permission bits)
    root = tmp_path / "ckpt"
    manager = CheckpointManager(root)
    real_mkdir = Path.mkdir

    def read_only(self: Path, *args, **kwargs):
        if self.parent == root or self == root:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(CheckpointWriteError) as info:
        manager.save(1, _write_actor("a"), {"step": 1}, "")
    assert "EACCES" in str(info.value) and "no previous checkpoint" in str(info.value)
    assert manager.latest() is None


def test_truncated_newest_checkpoint_falls_back_to_the_previous(tmp_path: Path, caplog) -> None:
    manager = CheckpointManager(tmp_path)
    manager.save(1, _write_actor("a"), {"step": 1}, "")
    newest = manager.save(2, _write_actor("b"), {"step": 2}, "")
    weights = newest / "actor" / "weights.bin"
    weights.write_bytes(weights.read_bytes()[:37])  # truncated by a crash of the storage, COMPLETE still there
    with caplog.at_level(logging.WARNING):
        assert manager.latest().step == 1
        assert [c.step for c in manager.complete_checkpoints()] == [1]  # what resume: auto chooses from
    assert "truncated" in caplog.text


def test_corrupted_newest_checkpoint_is_caught_by_the_checksum(tmp_path: Path, caplog) -> None:
    manager = CheckpointManager(tmp_path)
    manager.save(1, _write_actor("a"), {"step": 1}, "")
    newest = manager.save(2, _write_actor("b"), {"step": 2}, "")
    weights = newest / "actor" / "weights.bin"
    weights.write_bytes(b"c" * len(weights.read_bytes()))  # same size, other bytes
    with caplog.at_level(logging.WARNING):
        assert manager.latest().step == 1
    assert "sha256" in caplog.text


def test_checkpoint_without_manifest_is_still_accepted(tmp_path: Path) -> None:
    legacy = tmp_path / "global_step_4"
    (legacy / "actor").mkdir(parents=True)
    (legacy / "driver_state.json").write_text('{"step": 4}')
    (legacy / COMPLETE).write_text("4")
    assert CheckpointManager(tmp_path).latest().step == 4
