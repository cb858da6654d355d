"""Combining the five judge dimensions (0–10 each) with the format score (0–5) into one reward (0–10).

Notation per sample: ``s_d`` the judge score of dimension ``d``, ``f`` the format score, ``F = 2·f`` (0–10).
Weights ``w`` (five dimensions and ``format``) are normalised to sum 1 (``ŵ``).

* ``weighted_sum``:   ``R = Σ_d ŵ_d·s_d + ŵ_format·F``
* ``gated``:          ``R = weighted_sum`` if ``f ≥ gate_threshold`` (0–5 scale), else ``0``
* ``multiplicative``: ``g = Σ_d w_d·s_d / Σ_d w_d`` (the format weight plays no part);
  ``R = 10·sqrt(clamp(g/10, 1e-8, 1)·clamp(f/5, 1e-8, 1))``
* ``max_deviation``:  ``s* = s_d`` of the dimension with the largest ``|s_d − 5|`` (ties: the first in
  :data:`DIMENSIONS` order); ``R = (a·s* + b·F) / (a + b)`` with ``(a, b) = max_deviation_weights`` (0.8, 0.2 by
  default, which already sum to 1 — exactly the reference formula)

A sample with any score missing, non-finite or out of range is invalid: its reward is NaN and its mask entry
False. Nothing is filled in.

``improvement`` rewards the change from the preliminary image to the final one (same strategy both times):
``R_imp = 5 + (R(final scores, f) − R(preliminary scores, 5)) / 2`` — the preliminary image is paired with a
perfect format score, so "do nothing with a perfect answer" earns exactly 5 and a format flaw costs reward.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from easyr1.core.dimensions import DEFAULT_WEIGHTS, DIMENSIONS, FORMAT_WEIGHT_KEY
from easyr1.core.registries import STRATEGIES

WEIGHT_KEYS: tuple[str, ...] = (*DIMENSIONS, FORMAT_WEIGHT_KEY)
JUDGE_RANGE = (0.0, 10.0)
FORMAT_RANGE = (0.0, 5.0)
NEUTRAL_JUDGE_SCORE = 5.0
"""``max_deviation`` measures each dimension's distance from this score."""
MULTIPLICATIVE_FLOOR = 1e-8


def normalise_weights(weights: Mapping[str, float] | None = None) -> dict[str, float]:
    """The six weights (five dimensions and ``format``) scaled to sum 1, in :data:`WEIGHT_KEYS` order.

    All six keys are required, none negative, not all zero; ``None`` means the defaults (0.15 × 5, 0.25).
    """
    if weights is None:
        weights = DEFAULT_WEIGHTS
    missing = [k for k in WEIGHT_KEYS if k not in weights]
    unknown = sorted(set(weights) - set(WEIGHT_KEYS))
    if missing or unknown:
        raise ValueError(f"weights need exactly the keys {list(WEIGHT_KEYS)}; missing {missing}, unknown {unknown}")
    values = {k: float(weights[k]) for k in WEIGHT_KEYS}
    bad = {k: v for k, v in values.items() if not math.isfinite(v) or v < 0}
    if bad:
        raise ValueError(f"weights must be finite and non-negative, got {bad}")
    total = sum(values.values())
    if total <= 0:
        raise ValueError("weights must not all be zero")
    return {k: v / total for k, v in values.items()}


def _as_vector(name: str, value: Any) -> torch.Tensor:
    tensor = torch.as_tensor(value)
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.float32)
    if tensor.dim() != 1:
        raise ValueError(f"{name} must have shape (B,), got {tuple(tensor.shape)}")
    return tensor


def _within(tensor: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    return torch.isfinite(tensor) & (tensor >= bounds[0]) & (tensor <= bounds[1])


def _stack_judge(judge_scores: Mapping[str, Any]) -> torch.Tensor:
    """The five dimension vectors as one (B, 5) float tensor, in :data:`DIMENSIONS` order."""
    missing = [d for d in DIMENSIONS if d not in judge_scores]
    unknown = sorted(set(judge_scores) - set(DIMENSIONS))
    if missing or unknown:
        raise ValueError(
            f"judge_scores need exactly the dimensions {list(DIMENSIONS)}; missing {missing}, unknown {unknown} "
            "(a score missing for one sample is NaN, not an absent key)"
        )
    columns = [_as_vector(f"judge_scores[{d!r}]", judge_scores[d]) for d in DIMENSIONS]
    sizes = {d: c.shape[0] for d, c in zip(DIMENSIONS, columns, strict=True)}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"all judge score vectors must have the same length, got {sizes}")
    dtype = columns[0].dtype
    for column in columns[1:]:
        dtype = torch.promote_types(dtype, column.dtype)
    return torch.stack([c.to(dtype) for c in columns], dim=1)


def _inputs(judge_scores: Mapping[str, Any], format_scores: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, 5) judge scores and (B,) format scores in one float dtype, and the validity mask (B,)."""
    judge = _stack_judge(judge_scores)
    formats = _as_vector("format_scores", format_scores)
    if formats.shape[0] != judge.shape[0]:
        raise ValueError(f"format_scores has {formats.shape[0]} entries, judge_scores {judge.shape[0]}")
    dtype = torch.promote_types(judge.dtype, formats.dtype)
    judge = judge.to(dtype)
    formats = formats.to(dtype=dtype, device=judge.device)
    valid = _within(judge, JUDGE_RANGE).all(dim=1) & _within(formats, FORMAT_RANGE)
    return judge, formats, valid


def _judge_weight_vector(weights: dict[str, float], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor([weights[d] for d in DIMENSIONS], dtype=like.dtype, device=like.device)


@dataclass(frozen=True)
class StrategySettings:
    """The settings a strategy may read, as given (each strategy validates and normalises what it uses)."""

    weights: Mapping[str, float] | None = None
    """The six weights (``None``: the defaults); normalised by the strategies that use them."""
    gate_threshold: float = 2.5
    """``gated``: minimum format score (0–5)."""
    max_deviation_weights: tuple[float, float] = (0.8, 0.2)
    """``max_deviation``: (judge weight, format weight)."""


def _weighted_sum(judge: torch.Tensor, formats: torch.Tensor, weights: dict[str, float]) -> torch.Tensor:
    return judge @ _judge_weight_vector(weights, judge) + weights["format"] * (2.0 * formats)


def weighted_sum(judge: torch.Tensor, formats: torch.Tensor, settings: StrategySettings) -> torch.Tensor:
    """The ``weighted_sum`` strategy (registered in :data:`easyr1.core.registries.STRATEGIES`)."""
    return _weighted_sum(judge, formats, normalise_weights(settings.weights))


def gated(judge: torch.Tensor, formats: torch.Tensor, settings: StrategySettings) -> torch.Tensor:
    """The ``gated`` strategy: ``weighted_sum`` where the format score reaches the gate, else 0."""
    summed = _weighted_sum(judge, formats, normalise_weights(settings.weights))
    return torch.where(formats >= settings.gate_threshold, summed, torch.zeros_like(summed))


def multiplicative(judge: torch.Tensor, formats: torch.Tensor, settings: StrategySettings) -> torch.Tensor:
    """The ``multiplicative`` strategy: geometric mean of the weighted judge mean and the format score."""
    judge_weights = _judge_weight_vector(normalise_weights(settings.weights), judge)
    total = float(judge_weights.sum())
    if total <= 0:
        raise ValueError("multiplicative needs at least one judge dimension with a weight above 0")
    judge_mean = judge @ (judge_weights / total)
    judge_part = torch.clamp(judge_mean / 10.0, min=MULTIPLICATIVE_FLOOR, max=1.0)
    format_part = torch.clamp(formats / 5.0, min=MULTIPLICATIVE_FLOOR, max=1.0)
    return 10.0 * torch.sqrt(judge_part * format_part)


def max_deviation(judge: torch.Tensor, formats: torch.Tensor, settings: StrategySettings) -> torch.Tensor:
    """The ``max_deviation`` strategy: the dimension farthest from 5 mixed with the format score."""
    judge_weight, rule_weight = _check_max_deviation_weights(settings.max_deviation_weights)
    # argmax returns the first index among equal maxima: ties go to the first dimension in DIMENSIONS order.
    chosen = torch.argmax(torch.abs(judge - NEUTRAL_JUDGE_SCORE), dim=1, keepdim=True)
    representative = torch.gather(judge, 1, chosen).squeeze(1)
    return (judge_weight * representative + rule_weight * (2.0 * formats)) / (judge_weight + rule_weight)


def _check_max_deviation_weights(weights: tuple[float, float]) -> tuple[float, float]:
    if len(weights) != 2:
        raise ValueError(f"max_deviation_weights must be (judge weight, format weight), got {weights!r}")
    a, b = float(weights[0]), float(weights[1])
    if not (math.isfinite(a) and math.isfinite(b)) or a < 0 or b < 0 or a + b <= 0:
        raise ValueError(f"max_deviation_weights must be non-negative and not both zero, got {weights!r}")
    return a, b


def max_deviation_dimension(judge_scores: Mapping[str, Any]) -> torch.Tensor:
    """Index into :data:`DIMENSIONS` of the dimension ``max_deviation`` picks per sample (for logging)."""
    judge = _stack_judge(judge_scores)
    return torch.argmax(torch.abs(judge - NEUTRAL_JUDGE_SCORE), dim=1)


def combine(
    judge_scores: Mapping[str, Any],
    format_scores: Any,
    strategy: str,
    *,
    weights: Mapping[str, float] | None = None,
    gate_threshold: float = 2.5,
    max_deviation_weights: tuple[float, float] = (0.8, 0.2),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine judge and format scores with ``strategy`` (see the module docstring for the formulas).

    ``judge_scores`` maps each of the five dimension names to a (B,) tensor (0–10, NaN = missing);
    ``format_scores`` is (B,) on the 0–5 scale. Returns ``(reward, valid)``: reward (B,) on 0–10 with NaN where
    ``valid`` (a (B,) bool tensor) is False.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES.names()}")
    if not (math.isfinite(gate_threshold) and FORMAT_RANGE[0] <= gate_threshold <= FORMAT_RANGE[1]):
        raise ValueError(f"gate_threshold must lie in [0, 5] (format scale), got {gate_threshold}")
    judge, formats, valid = _inputs(judge_scores, format_scores)
    settings = StrategySettings(weights, gate_threshold, max_deviation_weights)
    reward = STRATEGIES.load(strategy)(judge, formats, settings)
    reward = torch.where(valid, reward, torch.full_like(reward, float("nan")))
    return reward, valid


def improvement_reward(final_reward: torch.Tensor, preliminary_reward: torch.Tensor) -> torch.Tensor:
    """``5 + (final − preliminary) / 2``: two combined rewards (0–10) to an improvement reward (0–10).

    NaN on either side stays NaN. Prefer :func:`improvement`, which also pairs the preliminary image with a
    perfect format score; with the response's own format score on both sides the format term cancels out.
    """
    return 5.0 + (torch.as_tensor(final_reward) - torch.as_tensor(preliminary_reward)) / 2.0


def improvement(
    final_scores: Mapping[str, Any],
    preliminary_scores: Mapping[str, Any],
    format_scores: Any,
    strategy: str,
    *,
    weights: Mapping[str, float] | None = None,
    gate_threshold: float = 2.5,
    max_deviation_weights: tuple[float, float] = (0.8, 0.2),
    preliminary_format: float = FORMAT_RANGE[1],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reward the change from the preliminary image to the final one, on 0–10.

    ``R_imp = 5 + (R(final_scores, format_scores) − R(preliminary_scores, preliminary_format)) / 2`` where ``R``
    is :func:`combine` with the same strategy and settings. ``preliminary_scores`` are per sample (B,): the caller
    repeats the prompt's cached preliminary scores over its group. Valid only where both sides are.
    """
    settings = {"weights": weights, "gate_threshold": gate_threshold, "max_deviation_weights": max_deviation_weights}
    final, final_valid = combine(final_scores, format_scores, strategy, **settings)
    baseline_format = torch.full_like(final, float(preliminary_format))
    before, before_valid = combine(preliminary_scores, baseline_format, strategy, **settings)
    valid = final_valid & before_valid
    reward = improvement_reward(final, before)
    reward = torch.where(valid, reward, torch.full_like(reward, float("nan")))
    return reward, valid


def combine_with_config(
    judge_scores: Mapping[str, Any],
    format_scores: Any,
    config: Any,
    *,
    preliminary_scores: Mapping[str, Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`combine`, or :func:`improvement` when ``config.improvement``, with a ``RewardConfig``'s settings."""
    settings = {
        "weights": dict(config.weights),
        "gate_threshold": config.gate_threshold,
        "max_deviation_weights": (config.max_deviation_gpt_weight, config.max_deviation_rule_weight),
    }
    if config.improvement:
        if preliminary_scores is None:
            raise ValueError("worker.reward.improvement is on: preliminary_scores are required")
        return improvement(judge_scores, preliminary_scores, format_scores, config.strategy, **settings)
    return combine(judge_scores, format_scores, config.strategy, **settings)
