"""Value types several packages share: a data row, a policy prompt, sampling settings, a generated response, an
edit request and its result.

They live here, below every pool, so that ``data``, ``models``, ``rollout``, ``editing``, ``actor``, ``reward``
and the ``sandbox`` can exchange them without importing each other. This module imports nothing from ``easyr1``
and nothing heavy (PIL only for type checking): Ray pickles these objects between the driver and its pools by
this module's path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["EditRequest", "EditResult", "EditSample", "PolicyPrompt", "RolloutOutput", "SamplingParams"]


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


@dataclass
class PolicyPrompt:
    """One prompt as the policy sees it: chat messages plus the images they reference, in order."""

    id: str
    messages: list[dict[str, Any]]
    """Chat-template messages (system, user with text and two image entries)."""
    images: list[Image.Image]
    """Source image, then the preliminary edited image."""


@dataclass
class SamplingParams:
    """How a rollout engine samples (built from ``worker.rollout`` by ``easyr1.rollout.sampling``)."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    max_tokens: int = 256
    seed: int | None = None


@dataclass
class RolloutOutput:
    """One generated response."""

    prompt_id: str
    sample_index: int
    """0..n-1 within the prompt's group."""
    text: str
    token_ids: list[int]
    logprobs: list[float] | None = None
    """Per-token log-probs under the sampling distribution's model (not temperature-scaled), when available."""
    finish_reason: str = "stop"
    """``stop`` (EOS) or ``length``."""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class EditRequest:
    """One re-edit: apply ``instruction`` to ``image`` (the preliminary edited image)."""

    image: Image.Image
    instruction: str
    seed: int
    key: str
    """Stable identifier for logs and de-duplication, e.g. ``"<sample id>/<response index>"``."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """Row metadata (the sandbox editor reads the scene state from it)."""


@dataclass
class EditResult:
    """The outcome of one :class:`EditRequest`: an image, or a failure with a reason — never a substitute."""

    image: Image.Image | None
    ok: bool
    reason: str | None = None
    """Failure reason when not ok: ``exception``, ``nan_output``, ``blank_output``, ``replica_died``,
    ``timeout``, ``unparsable_instruction`` …"""
    info: dict[str, Any] = field(default_factory=dict)
    """Backend details passed on to the judge request's metadata (the sandbox: final scene state, phrases not
    understood)."""
    latency_s: float = 0.0

    @classmethod
    def failure(cls, reason: str, **info: Any) -> EditResult:
        return cls(image=None, ok=False, reason=reason, info=dict(info))
