"""``easyr1 train CONFIG [key=value …]``: validate the config (before Ray starts), build the pools, run GRPO."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from easyr1.config import ConfigValidationError, EasyR1Config, dump_yaml, load_config

logger = logging.getLogger(__name__)


def progress_bar(console=None):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def run_training(cfg: EasyR1Config, *, console=None) -> list[dict[str, float]]:
    """Run GRPO for ``cfg`` in ``cfg.trainer.output_dir``; returns the per-step metrics of this invocation."""
    from .components import build_components
    from .grpo import GRPOTrainer

    run_dir = Path(cfg.trainer.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_yaml(cfg, redact=True))
    components = build_components(cfg, run_dir)
    try:
        trainer = GRPOTrainer(cfg, run_dir, components=components)
        trainer.resume()
        with progress_bar(console) as progress:
            return trainer.fit(progress)
    finally:
        components.close()


def load_or_report(console, command: str, path, overrides) -> EasyR1Config | None:
    """The validated config, or ``None`` after printing every problem (the caller exits with 2, before Ray)."""
    try:
        return load_config(path, overrides)
    except ConfigValidationError as exc:
        console.print(f"easyr1 {command}: {exc}", style="red", markup=False)
        return None


def train_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(stderr=True)
    cfg = load_or_report(console, "train", args.config, args.overrides)
    if cfg is None:
        return 2
    from .preflight import preflight, report

    failed = report(
        preflight(cfg, "train"), lambda line: print(f"easyr1 train: {line}", file=sys.stderr)
    )  # one line each
    if failed:  # before Ray starts or a model loads
        return failed
    from .grpo import StageFailure

    try:
        history = run_training(cfg, console=console)
    except StageFailure as exc:
        console.print(f"easyr1 train stopped: {exc}", style="red", markup=False)
        return 1
    if history:
        last = history[-1]
        console.print(
            f"done: {len(history)} step(s), last reward/mean {last.get('reward/mean', float('nan')):.3f}; run folder {cfg.trainer.output_dir}"
        )
    return 0
