"""``sft``: the supervised warm start on demonstrations (``easyr1 sft``; ``easyr1 demo`` runs it first)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .base import ConfigError, check_non_negative, check_positive


@dataclass
class SFTConfig:
    demonstrations: str | None = None
    """JSONL of demonstrations (``id`` plus ``response``) joined to the training rows by id; ``None`` uses the
    ``demonstration`` column of sandbox data."""
    epochs: int = 3
    """Passes over the demonstrations."""
    lr: float = 1e-3
    """Learning rate of the warm start."""
    batch_size: int = 8
    """Demonstrations per optimizer step."""
    max_steps: int | None = None
    """Stop after this many optimizer steps."""
    output_dir: str | None = None
    """Where the warm-started model is saved; ``None`` = ``trainer.output_dir/sft``."""

    def validate(self, path: str) -> Iterator[ConfigError]:
        yield from check_positive(f"{path}.epochs", self.epochs)
        yield from check_positive(f"{path}.lr", self.lr)
        yield from check_positive(f"{path}.batch_size", self.batch_size)
        if self.max_steps is not None:
            yield from check_non_negative(f"{path}.max_steps", self.max_steps)
