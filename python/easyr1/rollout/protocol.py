"""The ``RolloutEngine`` protocol: generate n responses per multimodal prompt; receive new weights."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from PIL import Image


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


@runtime_checkable
class RolloutEngine(Protocol):
    def generate(self, prompts: Sequence[PolicyPrompt], sampling: SamplingParams) -> list[RolloutOutput]:
        """``len(prompts) * sampling.n`` outputs, grouped by prompt in input order."""
        ...

    def update_weights(self, state_dict: Mapping[str, Any]) -> None:
        """Load new policy weights (full, unsharded tensors)."""
        ...
