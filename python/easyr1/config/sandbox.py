"""``sandbox``: the procedural world used by the embedded default (a simulation, not the production path)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .base import ConfigError, check_positive, check_range

SANDBOX_DEFECTS: tuple[str, ...] = (
    "shadow_wrong_side",
    "floating_object",
    "dry_ground_in_rain",
    "wet_ground_clear_sky",
    "summer_foliage_in_snow",
    "sun_at_night",
    "lit_candle_underwater",
    "wrong_decoration",
    "wrong_object_edited",
    "misplaced_object",
    "wrong_exposure",
)
"""Names of the defect kinds the sandbox can inject (``easyr1.sandbox.defects.CATALOGUE`` implements them)."""

IMAGE_ONLY_DEFECTS: tuple[str, ...] = ("misplaced_object", "wrong_exposure")
"""Defect kinds whose repair can be read only from the image (the request text does not say which way the
preliminary edit went wrong). They are injected only when named in ``sandbox.defects``."""

SFT_TEACHERS: tuple[str, ...] = ("oracle", "text_only")
"""``oracle``: the rows' demonstrations; ``text_only``: a teacher that reads only the text and guesses the
direction of image-only repairs at random (:func:`easyr1.sandbox.generator.write_sft_demonstrations`)."""


@dataclass
class SandboxConfig:
    image_size: int = 64
    """Side of the rendered scenes in pixels."""
    defects: list[str] = field(default_factory=list)
    """Defect kinds to inject; empty = every kind except the image-only ones (:data:`IMAGE_ONLY_DEFECTS`)."""
    min_defects: int = 1
    """Fewest defects injected into one preliminary edit."""
    max_defects: int = 3
    """Most defects injected into one preliminary edit (each comes with its own requested edit)."""
    train_rows: int = 256
    """Rows written by ``easyr1 demo`` / ``make-sandbox-data`` for training."""
    train_image_pairs: bool = False
    """Training rows come in twins that differ only in which way their image-only defects went wrong (same scene,
    same text; :func:`easyr1.sandbox.generator.generate_row`), so only the image tells their repairs apart.
    Validation rows are not paired."""
    val_rows: int = 32
    """Rows written for validation."""
    rows_per_file: int = 256
    """Rows per parquet file."""
    seed: int = 0
    """Seed of the scene generator (validation rows use a separate stream derived from it)."""
    sft_teacher: str = "oracle"
    """Who writes the SFT warm start's targets in ``easyr1 demo`` (:data:`SFT_TEACHERS`): ``oracle`` = the rows'
    demonstrations; ``text_only`` = image-only repairs with a random direction, so SFT teaches the format and the
    repair vocabulary and leaves the image-dependent choice to GRPO."""
    vision_pretrain_steps: int = 0
    """Steps of vision pretraining (:func:`easyr1.sandbox.vision_pretrain.pretrain_vision_tower`) that
    ``easyr1 demo`` gives a freshly built tiny policy's vision tower on rendered scenes of their own stream, with
    labels of the pictures' content (where plain objects stand, the exposure); 0 = none (a random vision tower)."""

    def validate(self, path: str) -> Iterator[ConfigError]:
        yield from check_range(f"{path}.image_size", self.image_size, low=32, high=1024)
        yield from check_positive(f"{path}.train_rows", self.train_rows)
        yield from check_positive(f"{path}.val_rows", self.val_rows)
        yield from check_positive(f"{path}.rows_per_file", self.rows_per_file)
        yield from check_range(f"{path}.vision_pretrain_steps", self.vision_pretrain_steps, low=0, high=100_000)
        yield from check_range(f"{path}.min_defects", self.min_defects, low=1, high=len(SANDBOX_DEFECTS))
        yield from check_range(f"{path}.max_defects", self.max_defects, low=self.min_defects, high=len(SANDBOX_DEFECTS))
        if self.sft_teacher not in SFT_TEACHERS:
            yield ConfigError(f"{path}.sft_teacher", self.sft_teacher, "must be one of " + ", ".join(SFT_TEACHERS))
        for i, name in enumerate(self.defects):
            if name not in SANDBOX_DEFECTS:
                yield ConfigError(f"{path}.defects[{i}]", name, "must be one of " + ", ".join(SANDBOX_DEFECTS))
