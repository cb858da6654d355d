"""Constant facts about a run (model, strategy, git revision) for the ``easyr1_run_info`` metric and trackers."""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from pathlib import Path

import easyr1
from easyr1.config import EasyR1Config

REVISION_ENV = "EASYR1_GIT_REVISION"
"""Set by container builds (no .git inside the image); wins over asking git."""


@lru_cache(maxsize=1)
def git_revision() -> str:
    """The source revision: ``$EASYR1_GIT_REVISION``, else ``git rev-parse`` of the package's checkout, else
    ``unknown``."""
    env = os.environ.get(REVISION_ENV, "").strip()
    if env:
        return env
    package_dir = Path(easyr1.__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(package_dir), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def run_info_labels(cfg: EasyR1Config, *, revision: str | None = None) -> dict[str, str]:
    """Labels of the run-info metric: all constant for a run, so they add one series, not cardinality."""
    w = cfg.worker
    model_path = w.actor.model.model_path.rstrip("/")
    return {
        "model": Path(model_path).name or model_path,
        "strategy": w.reward.strategy,
        "adv_estimator": cfg.algorithm.adv_estimator,
        "rollout_engine": w.rollout.name,
        "editor_backend": w.image_edit.backend,
        "judge_backend": cfg.judge.backend,
        "judge_model": cfg.judge.model if cfg.judge.backend == "openai" else cfg.judge.backend,
        "project": cfg.trainer.project_name,
        "experiment": cfg.trainer.experiment_name,
        "revision": revision if revision is not None else git_revision(),
        "version": getattr(easyr1, "__version__", "unknown"),
    }
