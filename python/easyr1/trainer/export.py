"""``easyr1 export CHECKPOINT --out DIR [--adapter]``: a Hugging Face model folder (safetensors + processor) from a
checkpoint, or for a LoRA run with ``--adapter`` a PEFT adapter folder."""

from __future__ import annotations

import argparse
import json
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
    if _model_only(checkpoint):
        console.print(
            f"[yellow]{checkpoint} is a model-only checkpoint: {checkpoint / 'model'} already is a Hugging Face folder"
        )
        return 0
    adapter = bool(getattr(args, "adapter", False))
    try:
        out = export_checkpoint(checkpoint, args.out, adapter=adapter)
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[red]easyr1 export: {exc}")
        return 1
    if adapter:
        console.print(
            f"exported the LoRA adapters of {checkpoint} → {out} (load with peft's PeftModel.from_pretrained)"
        )
    else:
        console.print(f"exported {checkpoint} → {out} (load with transformers' from_pretrained or vLLM)")
    return 0


def _model_only(checkpoint: Path) -> bool:
    """Whether ``checkpoint`` was written with ``trainer.save_model_only`` (its driver_state.json says so)."""
    state_file = checkpoint / "driver_state.json"
    if not state_file.is_file():
        return False
    try:
        return bool(json.loads(state_file.read_text()).get("model_only"))
    except (OSError, json.JSONDecodeError) as exc:
        logger.warning("%s: unreadable (%s); treating the checkpoint as a full one", state_file, exc)
        return False
