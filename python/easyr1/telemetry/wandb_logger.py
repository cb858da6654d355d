"""The wandb logger: scalars every step and an image table of samples (source | preliminary | final)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from easyr1.config import DIMENSIONS

from .samples import SampleRow, fit

logger = logging.getLogger(__name__)

TABLE_COLUMNS = [
    "step",
    "id",
    "source",
    "preliminary",
    "final",
    "instruction",
    "cot",
    "re_edit",
    "response",
    *DIMENSIONS,
    "format",
    "reward",
    "status",
]


def resolve_wandb_mode(mode: str, environ: Mapping[str, str] | None = None) -> str:
    """``auto`` → ``online`` when ``WANDB_API_KEY`` is set, else ``offline``; other modes pass through."""
    environ = os.environ if environ is None else environ
    if mode == "auto":
        return "online" if environ.get("WANDB_API_KEY", "").strip() else "offline"
    if mode not in ("online", "offline", "disabled"):
        raise ValueError(f"trainer.wandb_mode={mode!r}: must be auto, online, offline or disabled")
    return mode


class WandbLogger:
    """A wandb run whose files live in ``run_dir/wandb``; the config it receives must already be redacted.

    Offline, table images are staged in ``run_dir/wandb/data`` unless ``WANDB_DATA_DIR`` is set.

    Logging errors after a successful start are reported through ``logging`` and do not stop training.
    """

    def __init__(
        self,
        *,
        run_dir: Path,
        project: str,
        name: str,
        config: Mapping[str, Any],
        mode: str,
        run_id: str | None = None,
    ):
        import wandb

        self.wandb = wandb
        self.mode = resolve_wandb_mode(mode)
        run_dir.mkdir(parents=True, exist_ok=True)
        if self.mode == "offline" and not os.environ.get("WANDB_DATA_DIR"):
            # Table images are staged as artifact files under WANDB_DATA_DIR (default: the home folder); keep
            # them next to the offline run so the run folder (a PVC on Kubernetes) is complete for `wandb sync`.
            os.environ["WANDB_DATA_DIR"] = str(run_dir / "wandb" / "data")
        self.run = wandb.init(
            project=project,
            name=name,
            id=run_id,
            resume="allow" if run_id else None,
            config=dict(config),
            dir=str(run_dir),
            mode=self.mode,
            settings=wandb.Settings(console="off", quiet=True, x_disable_stats=False),
        )
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")
        logger.info("wandb run %s (%s) in %s", self.run.id, self.mode, getattr(self.run, "dir", run_dir))
        self.errors = 0

    def log_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
        payload = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        payload["step"] = step
        self._log(payload, step)

    def log_samples(self, step: int, rows: Sequence[SampleRow], key: str = "samples") -> None:
        table = self.wandb.Table(columns=TABLE_COLUMNS)
        for row in rows:
            scores = row.scores or {}
            table.add_data(
                step,
                row.id,
                self.wandb.Image(fit(row.source)),
                self.wandb.Image(fit(row.preliminary)),
                None if row.final is None else self.wandb.Image(fit(row.final)),
                row.instruction,
                row.cot,
                row.re_edit,
                row.response,
                *[scores.get(d) for d in DIMENSIONS],
                row.format_score,
                row.reward,
                row.status,
            )
        self._log({key: table, "step": step}, step)

    def _log(self, payload: dict[str, Any], step: int) -> None:
        try:
            self.run.log(payload)
        except Exception as exc:  # a tracker hiccup must not end a multi-day run
            self.errors += 1
            logger.warning("wandb log of step %d failed (%d so far): %s", step, self.errors, exc)

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
