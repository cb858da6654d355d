"""The ``Judge`` protocol: score the five consistency dimensions of edited images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from PIL import Image

DIMENSIONS: tuple[str, ...] = (
    "physical_geometric",
    "environment_context",
    "cultural_social",
    "logical_causal",
    "target_attribution",
)
"""The five judge dimensions, in the order used for ties and tables."""

FAILURE_REASONS = (
    "timeout",
    "rate_limited",
    "server_error",
    "unparsable",
    "truncated",
    "unfinished",
    "refused",
    "deadline",
    "client_error",
    "outage",
    "image_error",
)
"""Why a judge call or sample failed (``truncated``: ``finish_reason: length``; ``unfinished``: any other
``finish_reason`` that is not ``stop``; ``outage``: transient failures outlasted ``judge.outage_budget_s``;
``image_error``: an image of the sample could not be encoded)."""


@dataclass
class JudgeRequest:
    source_image: Image.Image
    edited_image: Image.Image
    """The image to score (the final re-edited image, or the preliminary one)."""
    instruction: str
    preliminary_image: Image.Image | None = None
    key: str = ""
    """Stable identifier for logs."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """Row metadata plus the editor's ``EditResult.info`` (the sandbox judge reads the scene state from it)."""


@dataclass
class JudgeResult:
    scores: dict[str, float] | None
    """Each of :data:`DIMENSIONS` → 0..10, or ``None`` when the sample is invalid."""
    valid: bool
    reason: str | None = None
    """One of :data:`FAILURE_REASONS` when not valid."""
    cached: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    calls: int = 0
    """HTTP calls made for this sample (0 on a cache hit)."""

    @classmethod
    def failure(cls, reason: str, **kw: Any) -> JudgeResult:
        return cls(scores=None, valid=False, reason=reason, **kw)


@runtime_checkable
class Judge(Protocol):
    def score_batch(self, requests: Sequence[JudgeRequest]) -> list[JudgeResult]:
        """Score a batch; one result per request, in order. Failures are results with ``valid=False``."""
        ...
