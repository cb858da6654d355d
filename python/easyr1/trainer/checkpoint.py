"""Checkpoints that survive ``kill -9``: written to a temporary folder, renamed when complete, tracker last.

Layout under the checkpoint root::

    global_step_20/            a complete checkpoint (never partially written: it appears by rename)
        actor/                 the actor pool's sharded model + optimizer + scheduler + RNG (or model only)
        driver_state.json      step, epoch, data loader position, best score, RNG states, …
        config.yaml            the resolved config (secrets redacted)
        COMPLETE               marker written last inside the temporary folder
    latest_checkpointed_iteration.txt   the tracker: the newest complete step, replaced atomically

``resume: auto`` loads the tracker's step if that folder is complete, else the newest complete folder; partial
folders (``*.tmp-*``) from a killed save are ignored and removed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

TRACKER = "latest_checkpointed_iteration.txt"
COMPLETE = "COMPLETE"
_STEP_DIR = re.compile(r"^global_step_(\d+)$")


@dataclass(frozen=True)
class CheckpointInfo:
    step: int
    path: Path


class CheckpointManager:
    def __init__(self, root: str | Path, save_limit: int = -1):
        self.root = Path(root)
        self.save_limit = save_limit

    def save(self, step: int, write: Callable[[Path], None], driver_state: dict[str, Any], config_yaml: str) -> Path:
        """Write a checkpoint for ``step``. ``write(folder)`` stores the actor's part inside ``folder``."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / f"global_step_{step}"
        tmp = self.root / f"global_step_{step}.tmp-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        write(tmp)
        _write_text(tmp / "driver_state.json", json.dumps(driver_state, indent=1, sort_keys=True))
        _write_text(tmp / "config.yaml", config_yaml)
        _write_text(tmp / COMPLETE, str(step))
        _fsync_dir(tmp)
        if final.exists():  # re-saving a step: move the old copy aside first, so a kill never leaves neither
            old = self.root / f"global_step_{step}.old-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(self.root)
        _write_text(self.root / TRACKER, str(step), atomic=True)
        logger.info("checkpoint saved: %s", final)
        self.prune()
        return final

    def complete_checkpoints(self) -> list[CheckpointInfo]:
        if not self.root.is_dir():
            return []
        found = []
        for child in self.root.iterdir():
            match = _STEP_DIR.match(child.name)
            if match and child.is_dir() and (child / COMPLETE).is_file():
                found.append(CheckpointInfo(int(match.group(1)), child))
        return sorted(found, key=lambda c: c.step)

    def latest(self) -> CheckpointInfo | None:
        """The newest complete checkpoint. The tracker is advisory: a kill between the rename and the tracker
        update leaves it one save behind, and a complete folder is what counts."""
        complete = self.complete_checkpoints()
        if not complete:
            return None
        tracker = self.root / TRACKER
        if tracker.is_file() and tracker.read_text().strip() != str(complete[-1].step):
            logger.warning("checkpoint tracker is behind; using newest complete step %s", complete[-1].step)
        return complete[-1]

    def remove_partial(self) -> list[Path]:
        """Delete folders left by an interrupted save."""
        removed = []
        if self.root.is_dir():
            for child in self.root.iterdir():
                if child.is_dir() and (".tmp-" in child.name or ".old-" in child.name):
                    shutil.rmtree(child, ignore_errors=True)
                    removed.append(child)
        if removed:
            logger.warning("removed %d partial checkpoint folder(s) from an interrupted save", len(removed))
        return removed

    def newer_than(self, step: int) -> list[CheckpointInfo]:
        """Complete checkpoints of later steps (left by another run in the same folder)."""
        return [c for c in self.complete_checkpoints() if c.step > step]

    def prune(self) -> None:
        if self.save_limit is None or self.save_limit < 0:
            return
        complete = self.complete_checkpoints()
        for info in complete[: max(0, len(complete) - self.save_limit)]:
            shutil.rmtree(info.path, ignore_errors=True)
            logger.info("pruned old checkpoint %s", info.path)

    @staticmethod
    def read_driver_state(path: Path) -> dict[str, Any]:
        return json.loads((path / "driver_state.json").read_text())


def _write_text(path: Path, text: str, *, atomic: bool = False) -> None:
    target = path.with_name(path.name + ".tmp") if atomic else path
    with open(target, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    if atomic:
        os.replace(target, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
