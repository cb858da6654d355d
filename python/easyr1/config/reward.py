"""``worker.reward``: the format rule, what to do without a re-edit, and how judge and format combine."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from easyr1.core.dimensions import DEFAULT_WEIGHTS, DIMENSIONS
from easyr1.core.registries import STRATEGIES

from .base import ConfigError, check_choice, check_non_negative, check_range

__all__ = ["DIMENSIONS", "RewardConfig"]


def _default_weights() -> dict[str, float]:
    return dict(DEFAULT_WEIGHTS)


@dataclass
class RewardConfig:
    format_mode: str = "strict"
    """Format rule: ``strict`` (closes known hacks; default) or ``seed`` (the reference arithmetic, exactly)."""
    re_edit_length_ideal: int = 50
    """Average Re_edit length (chars) up to which there is no length penalty."""
    re_edit_length_acceptable: int = 100
    """... up to which the penalty is 0.5."""
    re_edit_length_tolerable: int = 150
    """... up to which the penalty is 1.5 (longer: 2.5)."""
    re_edit_total_factor: float = 2.0
    """Strict mode: the total Re_edit length is also judged, against the three thresholds times this factor (the
    larger of the two penalties applies), so splitting one long instruction into many short blocks gains nothing."""
    max_blocks: int = 8
    """Strict mode: more tag blocks (CoT and Re_edit together) than this fail the hard requirement."""
    missing_re_edit: str = "zero_reward"
    """No Re_edit parsed: ``zero_reward`` (reward 0, not edited or judged), ``skip_edit`` (judge the preliminary
    image as is) or ``fallback_instruction`` (the reference behaviour: edit with ``fallback_instruction``)."""
    fallback_instruction: str = "Improve the image quality and consistency"
    """Instruction used by ``missing_re_edit=fallback_instruction``."""
    strategy: str = "max_deviation"
    """Combination of the five judge dimensions with the format score, a name of
    ``easyr1.core.registries.STRATEGIES``: weighted_sum, gated, multiplicative, max_deviation."""
    weights: dict[str, float] = field(default_factory=_default_weights)
    """Weights of the five dimensions and ``format`` (normalised to sum 1) for weighted_sum/gated/multiplicative."""
    gate_threshold: float = 2.5
    """``gated``: minimum format score (0-5 scale) for a non-zero reward."""
    max_deviation_gpt_weight: float = 0.8
    """``max_deviation``: weight of the judge dimension farthest from 5.0."""
    max_deviation_rule_weight: float = 0.2
    """``max_deviation``: weight of the format score (×2, 0-10)."""
    improvement: bool = False
    """Reward the change from the preliminary image's judge scores to the final image's (one editor seed per
    group; the preliminary image is judged once per prompt and cached)."""

    def validate(self, path: str) -> Iterator[ConfigError]:
        yield from check_choice(f"{path}.format_mode", self.format_mode, ["strict", "seed"])
        yield from check_choice(
            f"{path}.missing_re_edit", self.missing_re_edit, ["zero_reward", "skip_edit", "fallback_instruction"]
        )
        yield from check_choice(f"{path}.strategy", self.strategy, STRATEGIES.names())
        if not (0 <= self.re_edit_length_ideal <= self.re_edit_length_acceptable <= self.re_edit_length_tolerable):
            yield ConfigError(
                f"{path}.re_edit_length_ideal",
                (self.re_edit_length_ideal, self.re_edit_length_acceptable, self.re_edit_length_tolerable),
                "length thresholds must satisfy 0 <= ideal <= acceptable <= tolerable",
            )
        yield from check_range(f"{path}.re_edit_total_factor", self.re_edit_total_factor, low=1.0)
        if self.max_blocks < 2:
            yield ConfigError(f"{path}.max_blocks", self.max_blocks, "must be at least 2 (one CoT, one Re_edit)")
        for key in [*DIMENSIONS, "format"]:
            if key not in self.weights:
                yield ConfigError(
                    f"{path}.weights.{key}", None, "missing; all six weights (five dimensions and format) are required"
                )
        unknown = sorted(set(self.weights) - {*DIMENSIONS, "format"})
        for key in unknown:
            yield ConfigError(
                f"{path}.weights.{key}", self.weights[key], f"unknown weight; allowed: {[*DIMENSIONS, 'format']}"
            )
        for key, value in self.weights.items():
            yield from check_non_negative(f"{path}.weights.{key}", value)
        if sum(self.weights.values()) <= 0:
            yield ConfigError(f"{path}.weights", dict(self.weights), "weights must not all be zero")
        yield from check_range(f"{path}.gate_threshold", self.gate_threshold, low=0.0, high=5.0)
        yield from check_range(f"{path}.max_deviation_gpt_weight", self.max_deviation_gpt_weight, low=0.0, high=1.0)
        yield from check_range(f"{path}.max_deviation_rule_weight", self.max_deviation_rule_weight, low=0.0, high=1.0)
        if self.max_deviation_gpt_weight + self.max_deviation_rule_weight <= 0:
            yield ConfigError(
                f"{path}.max_deviation_gpt_weight",
                self.max_deviation_gpt_weight,
                "the two max_deviation weights must not both be zero",
            )
