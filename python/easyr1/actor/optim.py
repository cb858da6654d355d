"""AdamW and the learning-rate schedule (linear warm-up, then constant or cosine decay)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from easyr1.config.actor import OptimConfig


def build_optimizer(params: Iterable[torch.nn.Parameter], optim: OptimConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (``adamw_bf16`` is accepted as an alias; states stay fp32)."""
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise ValueError("the policy has no trainable parameters")
    return torch.optim.AdamW(
        trainable, lr=optim.lr, betas=(float(optim.betas[0]), float(optim.betas[1])), weight_decay=optim.weight_decay
    )


def warmup_steps(optim: OptimConfig, total_steps: int | None) -> int:
    if optim.lr_warmup_steps is not None:
        return int(optim.lr_warmup_steps)
    if optim.lr_warmup_ratio > 0:
        if not total_steps:
            raise ValueError("optim.lr_warmup_ratio needs the total number of optimizer steps")
        return int(optim.lr_warmup_ratio * total_steps)
    return 0


def lr_factor(step: int, *, warmup: int, total: int | None, kind: str, min_ratio: float) -> float:
    """Multiplier of the peak lr for optimizer step ``step`` (0-based): ``(step+1)/warmup`` during warm-up (the
    first update already moves), then 1 (``constant``) or a cosine from 1 to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    if kind != "cosine":
        raise ValueError(f"unknown lr_scheduler_type {kind!r}")
    if not total:
        raise ValueError("a cosine schedule needs the total number of optimizer steps")
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, optim: OptimConfig, total_steps: int | None
) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = warmup_steps(optim, total_steps)
    kind, min_ratio = optim.lr_scheduler_type, optim.min_lr_ratio
    if kind == "cosine" and not total_steps:
        raise ValueError("optim.lr_scheduler_type=cosine needs the total number of optimizer steps")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup=warmup, total=total_steps, kind=kind, min_ratio=min_ratio)
    )
