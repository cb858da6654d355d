"""Checkpoints that survive ``kill -9``: written to a temporary folder, renamed when complete, tracker last.

Layout under the checkpoint root::

    global_step_20/            a complete checkpoint (never partially written: it appears by rename)
        actor/                 the actor pool's sharded model + optimizer + scheduler + RNG (or model only)
        driver_state.json      step, epoch, data loader position, best score, RNG states, …
        inflight.pt            off_policy_1 only: the prefetched batch's responses and behaviour log-probs
        config.yaml            the resolved config (secrets redacted)
        MANIFEST.json          every file above: relative path, size, sha256 (each file fsynced while hashed)
        COMPLETE               marker written last inside the temporary folder
    latest_checkpointed_iteration.txt   the tracker: the newest complete step, replaced atomically

``resume: auto`` loads the newest complete folder whose files match its manifest (sizes; :meth:`verify` also
checks the sha256); a newer folder that does not match (truncated, a file missing) is skipped with a warning and
the previous complete one is used. Partial folders (``*.tmp-*``) from a killed save are ignored and removed. A save
that fails (ENOSPC, permission, an error of the actor's writer) removes its temporary folder and raises
:class:`CheckpointWriteError` with one line; the previous checkpoints and the tracker are untouched.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

TRACKER = "latest_checkpointed_iteration.txt"
COMPLETE = "COMPLETE"
MANIFEST = "MANIFEST.json"
_HASH_CHUNK = 8 * 2**20


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written; the message is one line naming the step, the folder and the cause."""


_STEP_DIR = re.compile(r"^global_step_(\d+)$")


@dataclass
class DriverState:
    """What the driver stores in ``driver_state.json`` next to the actor's part: everything, besides the weights and
    optimizer, that makes a resumed run continue exactly (the JSON keys are flat, as checkpoints have always had)."""

    step: int
    """The last completed step."""
    loader: dict[str, Any] = field(default_factory=dict)
    """The training data loader's position (its ``state_dict``)."""
    best_val: float | None = None
    """The best validation reward mean so far (``None`` before any)."""
    kl_coef: float | None = None
    """The adaptive KL controller's coefficient."""
    model_only: bool = False
    """The actor part is a Hugging Face model folder only (``trainer.save_model_only``): it cannot resume a run."""
    rng: dict[str, Any] = field(default_factory=dict)
    """The driver's Python/NumPy/torch generator states (``easyr1.trainer.rng``; stored flat as ``*_rng`` keys)."""
    inflight: dict[str, Any] | None = None
    """``trainer.pipeline: off_policy_1``: the batch already generated for the next step — the step it is for, the
    policy version that generated it, its row ids and the loader position before it; its responses and behaviour
    log-probs are in :data:`INFLIGHT_FILE` (``inflight_payload`` while saving)."""
    inflight_payload: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    """What :func:`write_inflight` stores (not part of the JSON)."""

    def to_json(self) -> dict[str, Any]:
        extra = {} if self.inflight is None else {"inflight": self.inflight}
        return {
            **extra,
            "step": self.step,
            "model_only": self.model_only,
            "loader": self.loader,
            "best_val": self.best_val,
            "kl_coef": self.kl_coef,
            **self.rng,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DriverState:
        return cls(
            step=int(data["step"]),
            loader=dict(data.get("loader") or {}),
            best_val=None if data.get("best_val") is None else float(data["best_val"]),
            kl_coef=None if data.get("kl_coef") is None else float(data["kl_coef"]),
            model_only=bool(data.get("model_only", False)),
            rng={k: v for k, v in data.items() if k.endswith("_rng")},
            inflight=data.get("inflight"),
        )

    @classmethod
    def read(cls, checkpoint: Path) -> DriverState:
        return cls.from_json(CheckpointManager.read_driver_state(checkpoint))


INFLIGHT_FILE = "inflight.pt"


def write_inflight(folder: Path, payload: dict[str, Any]) -> None:
    """Store an in-flight batch's responses (plain lists) and behaviour log-probs (a tensor) in ``folder``."""
    torch.save(payload, folder / INFLIGHT_FILE)


def read_inflight(checkpoint: Path) -> dict[str, Any]:
    """What :func:`write_inflight` stored (tensors and plain Python values only: no pickled objects)."""
    return torch.load(checkpoint / INFLIGHT_FILE, weights_only=True)


@dataclass(frozen=True)
class CheckpointInfo:
    step: int
    path: Path


class CheckpointManager:
    def __init__(self, root: str | Path, save_limit: int = -1):
        self.root = Path(root)
        self.save_limit = save_limit

    def save(self, step: int, write: Callable[[Path], None], driver_state: dict[str, Any], config_yaml: str) -> Path:
        """Write a checkpoint for ``step``. ``write(folder)`` stores the actor's part inside ``folder``.

        Raises :class:`CheckpointWriteError` (after removing the temporary folder) when anything fails before the
        folder is complete; the previous checkpoints stay as they were."""
        final = self.root / f"global_step_{step}"
        tmp = self.root / f"global_step_{step}.tmp-{os.getpid()}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
            write(tmp)
            _write_text(tmp / "driver_state.json", json.dumps(driver_state, indent=1, sort_keys=True))
            _write_text(tmp / "config.yaml", config_yaml)
            _write_text(tmp / MANIFEST, json.dumps(_manifest(tmp), indent=1, sort_keys=True))
            _write_text(tmp / COMPLETE, str(step))
            _fsync_dir(tmp)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)  # never a folder that resume could take for a checkpoint
            if not isinstance(exc, Exception):
                raise
            previous = self.latest()
            kept = f"previous checkpoint {previous.path} kept" if previous else "no previous checkpoint"
            raise CheckpointWriteError(
                f"checkpoint of step {step} not written to {self.root}: {_describe(exc)}; {kept}"
            ) from exc
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
        """Complete folders whose files have the sizes of their manifest, oldest first (a mismatch is skipped with a
        warning; folders from before manifests are taken as they are)."""
        if not self.root.is_dir():
            return []
        found = []
        for child in self.root.iterdir():
            match = _STEP_DIR.match(child.name)
            if match and child.is_dir() and (child / COMPLETE).is_file():
                problem = self.verify(child, checksums=False)
                if problem is not None:
                    logger.warning("checkpoint %s skipped: %s", child, problem)
                    continue
                found.append(CheckpointInfo(int(match.group(1)), child))
        return sorted(found, key=lambda c: c.step)

    @staticmethod
    def verify(path: Path, *, checksums: bool = True) -> str | None:
        """``None`` when every file of ``path``'s manifest is there with its size (and sha256 when ``checksums``),
        else what is wrong."""
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            return None  # written before manifests existed: the COMPLETE marker is all there is
        try:
            manifest = json.loads(manifest_path.read_text())
            files = manifest["files"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return f"unreadable manifest ({exc})"
        for rel, entry in files.items():
            file = path / rel
            try:
                size = file.stat().st_size
            except OSError:
                return f"{rel} is missing"
            if size != entry["size"]:
                return f"{rel} has {size} bytes, the manifest says {entry['size']} (truncated?)"
            if checksums and _sha256(file) != entry["sha256"]:
                return f"{rel} does not match its sha256"
        return None

    def latest(self) -> CheckpointInfo | None:
        """The newest complete checkpoint. The tracker is advisory: a kill between the rename and the tracker
        update leaves it one save behind, and a complete folder is what counts."""
        complete = self.complete_checkpoints()
        while complete and (problem := self.verify(complete[-1].path)) is not None:
            logger.warning(
                "newest checkpoint %s is damaged (%s); falling back to the previous one", complete[-1].path, problem
            )
            complete.pop()
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


def _sha256(path: Path, *, fsync: bool = False) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
        if fsync:
            os.fsync(handle.fileno())
    return digest.hexdigest()


def _manifest(folder: Path) -> dict[str, Any]:
    """Size and sha256 of every file under ``folder`` (fsynced on the way: the actor's writer may not have)."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        files[str(path.relative_to(folder))] = {"size": path.stat().st_size, "sha256": _sha256(path, fsync=True)}
    for sub in sorted({p.parent for p in folder.rglob("*")} | {folder}):
        _fsync_dir(sub)
    return {"version": 1, "files": files}


def _describe(exc: BaseException) -> str:
    """One line: the OS error's name and text (ENOSPC, EACCES, …), else the exception's first line."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__
    if isinstance(cause, OSError) and cause.errno is not None:
        name = errno.errorcode.get(cause.errno, str(cause.errno))
        where = f" ({cause.filename})" if cause.filename else ""
        return f"{name}: {cause.strerror or os.strerror(cause.errno)}{where}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
