"""``sandbox``: the procedural world used by the embedded default (a simulation, not the production path)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .base import ConfigError, check_positive, check_range


@dataclass
class SandboxConfig:
    image_size: int = 64
    """Side of the rendered scenes in pixels."""
    defects: list[str] = field(default_factory=list)
    """Defect kinds to inject; empty = all kinds."""
    train_rows: int = 256
    """Rows written by ``easyr1 demo`` / ``make-sandbox-data`` for training."""
    val_rows: int = 32
    """Rows written for validation."""
    seed: int = 0
    """Seed of the scene generator."""

    def validate(self, path: str) -> Iterator[ConfigError]:
        yield from check_range(f"{path}.image_size", self.image_size, low=32, high=1024)
        yield from check_positive(f"{path}.train_rows", self.train_rows)
        yield from check_positive(f"{path}.val_rows", self.val_rows)
