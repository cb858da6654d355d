"""The row type every reader yields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image


@dataclass
class EditSample:
    """One training/validation row: a source image, an edit instruction and the preliminary edit."""

    id: str
    task: str
    instruction: str
    """The instruction used in the prompt (``data.instruction_variant`` of the pair)."""
    source_image: Image.Image
    edited_image: Image.Image
    """The preliminary edited image (made earlier by the editor from source + instruction)."""
    instruction_short: str | None = None
    instruction_detailed: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    """Extra columns of the row, kept as is (the sandbox stores its scene and defect here)."""
    origin: str = ""
    """``file:row`` where the row came from (for error messages)."""
    source_original_size: tuple[int, int] | None = None
    """``(width, height)`` of the source image as stored, before fitting it to ``min_pixels``/``max_pixels``."""
    edited_original_size: tuple[int, int] | None = None
    """``(width, height)`` of the preliminary edit as stored, before fitting."""
