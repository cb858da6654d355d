"""What the driver calls on the actor pool: the contract ``GRPOTrainer`` and ``Components.actor`` are typed with.

The rollout pool's contract is :class:`easyr1.rollout.protocol.Rollout`, the editor's
:class:`easyr1.editing.protocol.Editor` (each drained through ``DrainsMetrics`` when it keeps counters: the Ray
pools' restarts and retries, for the training and the validation rows), the judge's
:class:`easyr1.reward.judge.protocol.Judge`. ``tests/trainer/test_contracts.py`` checks that ``ActorPool`` satisfies
:class:`TrainingActor` and that ``trainer/grpo.py`` calls nothing on a component that its contract does not declare.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

from easyr1.rollout.protocol import WeightSource

if TYPE_CHECKING:
    from easyr1.actor.batch import PolicyBatch


@runtime_checkable
class TrainingActor(WeightSource, Protocol):
    """The actor pool as the driver holds it: log-probs, the policy update, checkpoints, and (as a
    :class:`WeightSource`) what the rollout pool's weight sync asks of it."""

    def compute_log_probs(self, batch: PolicyBatch, *, temperature: float | None = None) -> torch.Tensor:
        """(B, T) log-probs of the batch's responses under the current policy (the old log-probs)."""
        ...

    def compute_ref_log_probs(self, batch: PolicyBatch) -> torch.Tensor:
        """(B, T) log-probs under the frozen reference model."""
        ...

    def update_policy(self, batch: PolicyBatch) -> dict[str, float]:
        """One PPO/GRPO update over the batch (its advantages set); ``actor/*`` metrics."""
        ...

    def save_checkpoint(self, path: str) -> None:
        """Write the sharded model, optimizer, scheduler and RNG state under ``path/actor``."""
        ...

    def load_checkpoint(self, path: str) -> None:
        """Load what :meth:`save_checkpoint` wrote."""
        ...

    def export_hf(self, path: str, dtype: str | None = None) -> None:
        """Write the full model as a Hugging Face folder (model-only checkpoints)."""
        ...
