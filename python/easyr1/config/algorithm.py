"""``algorithm``: advantage estimator, KL control and online filtering (EasyR1 layout)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from easyr1.core.registries import ESTIMATORS

from .base import ConfigError, check_choice, check_non_negative, check_positive, check_range

KL_PENALTIES = [
    *["kl", "k1", "abs", "mse", "k2", "low_var_kl", "k3"],
    *["kl+", "k1+", "abs+", "mse+", "k2+", "low_var_kl+", "k3+"],
]
"""Per-token estimators the trainer can use (``full`` exists in ``easyr1.algorithms.kl_penalty`` for callers
holding whole log-distributions, which the actor does not keep)."""


@dataclass
class AlgorithmConfig:
    adv_estimator: str = "grpo"
    """Advantage estimator, a name of ``easyr1.core.registries.ESTIMATORS``: grpo, dr_grpo, rloo (outcome,
    group-relative), reinforce_plus_plus, reinforce_plus_plus_baseline (token-level)."""
    gamma: float = 1.0
    """Discount of the token-level return (reinforce_plus_plus estimators)."""
    norm_eps: float = 1e-6
    """Epsilon added to the group std (grpo); passed as ``compute_advantage(..., eps=norm_eps)``."""
    disable_kl: bool = False
    """Turn off every KL term (loss and reward penalty)."""
    use_kl_loss: bool = True
    """KL to the reference as a loss term (``True``) or as a per-token reward penalty (``False``)."""
    kl_penalty: str = "low_var_kl"
    """KL estimator: kl|k1, abs, mse|k2, low_var_kl|k3, straight-through variants with a ``+`` suffix (value of the
    estimator, gradient of k2)."""
    kl_coef: float = 1e-2
    """KL coefficient (initial value when ``kl_type=adaptive``)."""
    kl_type: str = "fixed"
    """KL coefficient controller for the reward penalty: ``fixed`` or ``adaptive``."""
    kl_target: float = 0.1
    """Target KL of the adaptive controller."""
    kl_horizon: float = 10000.0
    """Horizon of the adaptive controller."""
    online_filtering: bool = False
    """Drop prompt groups whose reward spread is too small (DAPO dynamic sampling) and refill the batch."""
    filter_key: str = "overall"
    """Which score the filter looks at: ``overall`` (combined reward) or a judge dimension name."""
    filter_std_threshold: float = 0.05
    """Keep a group only if the std of its scores exceeds this (continuous 0-10 judge scores). The std is unbiased and
    taken over the group's valid samples; a group with fewer than 2 valid samples is always dropped."""
    filter_low: float | None = None
    """Optional: keep a group only if its mean score is above this."""
    filter_high: float | None = None
    """Optional: keep a group only if its mean score is below this."""
    max_try_make_batch: int = 10
    """How many extra rollout rounds online filtering may use to fill a batch (seed key: trainer.max_try_make_batch)."""

    def validate(self, path: str) -> Iterator[ConfigError]:
        yield from check_choice(f"{path}.adv_estimator", self.adv_estimator, ESTIMATORS.names())
        yield from check_choice(f"{path}.kl_penalty", self.kl_penalty, KL_PENALTIES)
        yield from check_choice(f"{path}.kl_type", self.kl_type, ["fixed", "adaptive"])
        yield from check_range(f"{path}.gamma", self.gamma, low=0.0, high=1.0)
        yield from check_positive(f"{path}.norm_eps", self.norm_eps)
        yield from check_non_negative(f"{path}.kl_coef", self.kl_coef)
        yield from check_positive(f"{path}.kl_target", self.kl_target)
        yield from check_positive(f"{path}.kl_horizon", self.kl_horizon)
        yield from check_non_negative(f"{path}.filter_std_threshold", self.filter_std_threshold)
        yield from check_non_negative(f"{path}.max_try_make_batch", self.max_try_make_batch)
        if self.filter_low is not None and self.filter_high is not None and self.filter_low >= self.filter_high:
            yield ConfigError(f"{path}.filter_low", self.filter_low, f"must be below filter_high={self.filter_high}")
