"""``easyr1 export CHECKPOINT --out DIR``: a Hugging Face model folder (safetensors + processor) from a checkpoint."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def export_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from easyr1.actor.checkpoint import export_checkpoint

    console = Console(stderr=True)
    checkpoint = Path(args.checkpoint)
    if checkpoint.name == "actor":  # accept …/global_step_N/actor as well as …/global_step_N
        checkpoint = checkpoint.parent
    if (checkpoint / "model" / "config.json").is_file() and not (checkpoint / "actor").exists():
        console.print(
            f"[yellow]{checkpoint} is a model-only checkpoint: {checkpoint / 'model'} already is a Hugging Face folder"
        )
        return 0
    try:
        out = export_checkpoint(checkpoint, args.out)
    except FileNotFoundError as exc:
        console.print(f"[red]easyr1 export: {exc}")
        return 1
    console.print(f"exported {checkpoint} → {out} (load with transformers' from_pretrained or vLLM)")
    return 0
