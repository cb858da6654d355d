"""The small on-disk world the Ray recovery tests train on: a tiny policy and sandbox train/val splits."""

from __future__ import annotations

from pathlib import Path


def write_sandbox_assets(root: Path, train_rows: int, val_rows: int = 4) -> Path:
    """``root/policy`` (tiny random-weight policy, seed 0) and ``root/data/{train,val}`` (32 px sandbox rows)."""
    from easyr1.models.tiny import build_tiny_policy
    from easyr1.sandbox.generator import write_sandbox_dataset

    build_tiny_policy(root / "policy", seed=0)
    write_sandbox_dataset(root / "data" / "train", rows=train_rows, seed=0, image_size=32)
    write_sandbox_dataset(root / "data" / "val", rows=val_rows, seed=0, image_size=32, split="val")
    return root
