"""Few-step editing: a distilled LoRA on the editor's transformer and the scheduler settings it was trained with.

Distilled ("Lightning"-style) LoRAs let Qwen-Image-Edit edit in 4–8 denoising steps instead of 40–50, with true
CFG off. They come as a diffusers LoRA file plus scheduler settings (e.g. a fixed ``shift``) that must match the
distillation, so both are configuration (``worker.image_edit.lora_path`` / ``lora_scale`` / ``fuse_lora`` /
``scheduler``) and are applied here, once, when a replica loads its pipeline.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ADAPTER_NAME = "distilled"
"""The adapter name the LoRA is loaded under (fused into the weights unless ``fuse_lora`` is off)."""


def apply_scheduler_overrides(pipeline: Any, overrides: dict[str, Any]) -> None:
    """Rebuild the pipeline's scheduler from its own config with ``overrides`` (keys must exist in that config)."""
    if not overrides:
        return
    scheduler = pipeline.scheduler
    known = set(scheduler.config.keys())
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(
            f"worker.image_edit.scheduler: {unknown} are not settings of {type(scheduler).__name__} "
            f"(known: {sorted(k for k in known if not k.startswith('_'))})"
        )
    pipeline.scheduler = type(scheduler).from_config(scheduler.config, **overrides)
    logger.info("editor scheduler %s with %s", type(scheduler).__name__, overrides)


def load_distilled_lora(pipeline: Any, lora_path: str | Path, *, scale: float = 1.0, fuse: bool = True) -> None:
    """Load a diffusers LoRA for the pipeline's transformer from a folder or a ``.safetensors`` file.

    ``fuse`` merges it into the weights (no per-step adapter cost) and drops the adapter modules; otherwise it stays
    a live adapter at ``scale``. Needs ``peft`` (diffusers' LoRA loader uses it).
    """
    path = Path(lora_path)
    if not path.exists():
        raise FileNotFoundError(f"worker.image_edit.lora_path: {path} does not exist")
    if path.is_file():
        pipeline.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=ADAPTER_NAME)
    else:
        pipeline.load_lora_weights(str(path), adapter_name=ADAPTER_NAME)
    if fuse:
        pipeline.fuse_lora(components=["transformer"], lora_scale=scale, adapter_names=[ADAPTER_NAME])
        pipeline.unload_lora_weights()
    else:
        pipeline.set_adapters([ADAPTER_NAME], adapter_weights=[scale])
    logger.info("editor LoRA %s loaded (scale %s, %s)", path, scale, "fused" if fuse else "live adapter")
