"""Build everything a run needs from a config — Ray, data, pools, editor, judge, telemetry — and tear it down."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from easyr1.actor.batch import PolicyBatch
from easyr1.config import EasyR1Config
from easyr1.core.types import PolicyPrompt, RolloutOutput
from easyr1.data import EditDataLoader, EditSample, build_dataloader, build_policy_prompt
from easyr1.editing.protocol import Editor
from easyr1.reward.judge.protocol import Judge
from easyr1.rollout.protocol import Rollout

from .contracts import TrainingActor

if TYPE_CHECKING:
    from easyr1.telemetry import Telemetry

logger = logging.getLogger(__name__)

SOCKET_PATH_MAX = 107
"""Longest AF_UNIX socket path on Linux (108 bytes with the NUL); Ray refuses a longer one (macOS: 103)."""
RAY_SOCKET_SUFFIX = 66
"""Bytes Ray adds after its temp folder for its longest socket: ``/session_<date>_<time>_<usec>_<pid>`` (36 + up to
7 for the PID) + ``/sockets/plasma_store`` (21), measured with Ray 2.60 (61 bytes with a 4-digit PID), plus 2 for
Ray's ``.N`` suffix of a repeated name."""
_FALLBACK_PREFIX = "easyr1-ray-"
_FALLBACK_NAME = re.compile(r"easyr1-ray-(\d+)-[a-z0-9_]+$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_ray_temp(root: str | None = None) -> list[str]:
    """Remove fallback Ray temp folders (``easyr1-ray-<pid>-*`` in the system temp folder) left by a process that
    no longer runs (killed before it could clean up); returns what was removed."""
    root = root or tempfile.gettempdir()
    removed = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        match = _FALLBACK_NAME.match(entry.name)
        if match and entry.is_dir(follow_symlinks=False) and not _alive(int(match.group(1))):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed


def ray_temp_dir(run_dir: Path) -> tuple[Path, bool]:
    """Where a Ray started by this run keeps its sessions, and whether to remove it on exit.

    ``<run_dir>/ray`` when Ray's socket paths under it stay within :data:`SOCKET_PATH_MAX` (it is kept with the
    run: Ray's logs of the run). A deeper run folder gets a short folder ``easyr1-ray-<pid>-*`` in the system temp
    folder instead, removed when the run closes (and by the next run if this one was killed).
    """
    preferred = run_dir.absolute() / "ray"
    if len(str(preferred).encode()) + RAY_SOCKET_SUFFIX <= SOCKET_PATH_MAX:
        preferred.mkdir(parents=True, exist_ok=True)
        return preferred, False
    prefix = f"{_FALLBACK_PREFIX}{os.getpid()}-"
    name_bytes = len(prefix) + 9  # "/" + the prefix + mkdtemp's 8 random characters
    roots = [tempfile.gettempdir(), "/tmp"]  # a deep TMPDIR still gets a usable folder
    root = next((r for r in roots if len(r.encode()) + name_bytes + RAY_SOCKET_SUFFIX <= SOCKET_PATH_MAX), roots[0])
    for path in remove_stale_ray_temp(root):
        logger.info("removed the Ray temp folder of an earlier run that did not exit cleanly: %s", path)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    logger.info("run folder too deep for Ray's socket paths; Ray's temp folder is %s (removed on exit)", folder)
    return folder, True


class StepBatches:
    """``next_batch()`` across epochs on top of an :class:`EditDataLoader` (whose iteration is one epoch)."""

    def __init__(self, loader: EditDataLoader):
        self.loader = loader
        self._iter: Any = None

    def next_batch(self) -> list[EditSample]:
        for _ in range(2):
            if self._iter is None:
                self._iter = iter(self.loader)
            try:
                return next(self._iter)
            except StopIteration:
                self._iter = None
        raise RuntimeError(f"the training data yields no batch of {self.loader.batch_size} rows")

    def metrics(self) -> dict[str, float]:
        """``data/epoch`` and the epoch's counters (rows read, bad rows by reason, overlong prompts)."""
        return self.loader.metrics()

    def steps_per_epoch(self) -> int:
        return max(1, len(self.loader))

    def state_dict(self) -> dict[str, Any]:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._iter = None
        self.loader.load_state_dict(state)

    def iter_batches(self):
        """One full pass (validation): a fresh epoch every time."""
        self.loader.epoch, self.loader.position = 0, 0
        yield from self.loader


@dataclass
class Components:
    """What the driver talks to. Built by :func:`build_components`; ``close()`` releases all of it."""

    cfg: EasyR1Config
    actor: TrainingActor
    rollout: Rollout
    editor: Editor
    judge: Judge
    telemetry: Telemetry
    train_loader: StepBatches
    val_loader: StepBatches | None
    started_ray: bool = False
    closables: list[Any] = field(default_factory=list)
    ray_temp: Path | None = None
    """A Ray temp folder to remove once Ray is shut down (the short fallback of :func:`ray_temp_dir`)."""

    def build_prompt(self, row: EditSample) -> PolicyPrompt:
        return build_policy_prompt(row, self.cfg.data.system_prompt, self.cfg.data.prompt_layout)

    @staticmethod
    def make_actor_batch(prompts: list[PolicyPrompt], outputs: list[RolloutOutput], valid: torch.Tensor) -> PolicyBatch:
        return PolicyBatch(prompts=prompts, responses=[list(o.token_ids) for o in outputs], valid=valid)

    def close(self) -> None:
        for obj in reversed(self.closables):
            try:
                (getattr(obj, "close", None) or obj.shutdown)()
            except Exception as exc:  # keep closing the rest
                logger.warning("while shutting down %s: %s", type(obj).__name__, exc)
        if self.started_ray:
            import ray

            ray.shutdown()
        if self.ray_temp is not None:
            shutil.rmtree(self.ray_temp, ignore_errors=True)
            self.ray_temp = None


def training_steps(cfg: EasyR1Config, train: StepBatches) -> int:
    """GRPO steps of the run: ``total_epochs`` × batches per epoch, capped by ``max_steps``."""
    total = train.steps_per_epoch() * cfg.trainer.total_epochs
    return min(total, cfg.trainer.max_steps) if cfg.trainer.max_steps else total


def build_editor_for(cfg: EasyR1Config) -> tuple[Editor, Any]:
    """The editor pool on Ray (Qwen-Image-Edit, or several replicas), else the editor in this process."""
    from easyr1.editing.factory import build_editor, build_editor_pool

    edit = cfg.worker.image_edit
    if edit.backend == "qwen_image_edit" or edit.num_replicas > 1:
        pool = build_editor_pool(edit, cfg.cluster.editor)
        return pool, pool
    editor = build_editor(edit)
    return editor, editor if hasattr(editor, "close") else None


def build_components(cfg: EasyR1Config, run_dir: Path) -> Components:
    from easyr1.actor.pool import ActorPool, optimizer_steps_per_training_step
    from easyr1.models.loading import load_processor
    from easyr1.pools.placement import init_ray
    from easyr1.reward.judge import build_judge
    from easyr1.rollout.pool import RolloutPool
    from easyr1.telemetry import Telemetry

    run_dir.mkdir(parents=True, exist_ok=True)
    closables: list[Any] = []
    model = cfg.worker.actor.model
    processor = load_processor(model.tokenizer_path or model.model_path, trust_remote_code=model.trust_remote_code)
    train = StepBatches(build_dataloader(cfg.data, "train", processor=processor))
    val = StepBatches(build_dataloader(cfg.data, "val", processor=processor)) if cfg.data.val_files else None
    telemetry = Telemetry(cfg, run_dir)
    closables.append(telemetry)
    # Ray's temp folder lives in the run folder, or (socket paths too long) in a short one removed on exit.
    temp, remove_temp = ray_temp_dir(run_dir)
    try:
        started = init_ray(cfg.cluster, temp_dir=str(temp))
    except BaseException:
        if remove_temp:
            shutil.rmtree(temp, ignore_errors=True)
        raise
    if not started and remove_temp:  # Ray already ran, or a cluster elsewhere: the folder is not used
        shutil.rmtree(temp, ignore_errors=True)
    ray_temp = temp if started and remove_temp else None
    try:
        judge = build_judge(cfg.judge)
        if hasattr(judge, "close"):
            closables.append(judge)
        editor, editor_closable = build_editor_for(cfg)
        if editor_closable is not None:
            closables.append(editor_closable)
        actor = ActorPool(cfg, total_steps=training_steps(cfg, train) * optimizer_steps_per_training_step(cfg))
        closables.append(actor)
        rollout = RolloutPool(cfg)
        closables.append(rollout)
    except BaseException:
        comps = Components(cfg, None, None, None, None, telemetry, train, val, started, closables, ray_temp)  # type: ignore[arg-type]
        comps.close()
        raise
    return Components(cfg, actor, rollout, editor, judge, telemetry, train, val, started, closables, ray_temp)
