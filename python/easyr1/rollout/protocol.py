"""The ``RolloutEngine`` protocol: generate n responses per multimodal prompt; receive new weights."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

# The value types moved to the neutral easyr1.core.types; re-exported here for actor/, trainer/ and tests until
# phase B of issue 17 moves those importers (then these re-exports go).
from easyr1.core.types import PolicyPrompt, RolloutOutput, SamplingParams

__all__ = ["PolicyPrompt", "RolloutEngine", "RolloutOutput", "SamplingParams"]


@runtime_checkable
class RolloutEngine(Protocol):
    def generate(self, prompts: Sequence[PolicyPrompt], sampling: SamplingParams) -> list[RolloutOutput]:
        """``len(prompts) * sampling.n`` outputs, grouped by prompt in input order."""
        ...

    def update_weights(self, state_dict: Mapping[str, Any]) -> None:
        """Load new policy weights (full, unsharded tensors)."""
        ...
