"""Dynamic sampling (DAPO online filtering): keep only prompt groups whose scores carry a learning signal.

Config: ``algorithm.online_filtering``, ``algorithm.filter_key``, ``algorithm.filter_std_threshold``,
``algorithm.filter_low``, ``algorithm.filter_high``, ``algorithm.max_try_make_batch``.

A group is kept when all of these hold, over its **valid** samples only:

* it has at least 2 valid samples (otherwise it yields no group-relative advantage anyway);
* the unbiased std of its scores is strictly above ``std_threshold`` (when given) — the rule that suits continuous
  0–10 judge scores;
* its mean score lies strictly inside ``(low, high)`` (each bound optional) — the binary-reward DAPO rule.

The driver keeps the rows where ``keep`` is True, generates more prompts while the batch is short (up to
``max_try_make_batch`` extra rounds), and logs the counts.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch

from .groups import group_stats


@dataclass
class GroupFilterResult:
    """Outcome of :func:`filter_groups`. Counts are plain ints, ready for logging."""

    keep: torch.Tensor
    """(B,) bool: the sample belongs to a kept group (validity is unchanged; invalid rows of a kept group stay
    invalid)."""
    group_keep: torch.Tensor
    """(G,) bool per dense group id (ids in order of first appearance for non-tensor labels)."""
    kept_groups: int
    """Groups kept."""
    dropped_groups: int
    """Groups dropped for any reason."""
    dropped_too_few_valid: int
    """Groups dropped because they have fewer than 2 valid samples."""
    dropped_low_std: int
    """Groups (with ≥ 2 valid samples) dropped because their std is ≤ ``std_threshold``."""
    dropped_mean_range: int
    """Groups (with ≥ 2 valid samples and enough spread) dropped because their mean is outside ``(low, high)``."""
    kept_samples: int
    """Samples in kept groups."""

    def as_metrics(self, prefix: str = "filter/") -> dict[str, float]:
        """Counts as a flat metrics dict."""
        names = ("kept_groups", "dropped_groups", "dropped_too_few_valid", "dropped_low_std", "dropped_mean_range")
        out = {f"{prefix}{name}": float(getattr(self, name)) for name in names}
        out[f"{prefix}kept_samples"] = float(self.kept_samples)
        return out


def filter_groups(
    scores: torch.Tensor | Sequence[float],
    group_index: torch.Tensor | Sequence[Hashable],
    valid: torch.Tensor | Sequence[bool] | None = None,
    *,
    std_threshold: float | None = None,
    low: float | None = None,
    high: float | None = None,
) -> GroupFilterResult:
    """Decide which prompt groups to keep (see the module docstring for the rules).

    Args:
        scores: (B,) the filtered score per sample (``algorithm.filter_key``: combined reward or one dimension).
        group_index: (B,) group label per sample.
        valid: (B,) bool; None means all valid. Invalid scores are never read.
        std_threshold: keep only groups with std > this (None: no std rule).
        low, high: keep only groups with low < mean < high (None: that side unbounded).
    """
    s = (scores if isinstance(scores, torch.Tensor) else torch.as_tensor(scores)).detach().to(torch.float64)
    if s.dim() != 1:
        raise ValueError(f"scores must have shape (B,), got {tuple(s.shape)}")
    if low is not None and high is not None and low >= high:
        raise ValueError(f"low ({low}) must be below high ({high})")
    v = (
        torch.ones_like(s, dtype=torch.bool)
        if valid is None
        else torch.as_tensor(valid, device=s.device).to(torch.bool).reshape(-1)
    )
    if v.shape != s.shape:
        raise ValueError(f"valid must have shape {tuple(s.shape)}, got {tuple(v.shape)}")
    bad = torch.nonzero(v & ~torch.isfinite(s), as_tuple=True)[0]
    if bad.numel():
        raise ValueError(f"non-finite score on sample(s) marked valid: indices {bad.tolist()[:20]}")

    stats = group_stats(s, group_index, v, min_valid=2)
    enough = stats.usable
    spread = torch.ones_like(enough) if std_threshold is None else stats.std > std_threshold
    in_range = torch.ones_like(enough)
    if low is not None:
        in_range &= stats.mean > low
    if high is not None:
        in_range &= stats.mean < high
    group_keep = enough & spread & in_range
    keep = stats.per_sample(group_keep) if s.numel() else torch.zeros(0, dtype=torch.bool)
    return GroupFilterResult(
        keep=keep,
        group_keep=group_keep,
        kept_groups=int(group_keep.sum()),
        dropped_groups=int((~group_keep).sum()),
        dropped_too_few_valid=int((~enough).sum()),
        dropped_low_std=int((enough & ~spread).sum()),
        dropped_mean_range=int((enough & spread & ~in_range).sum()),
        kept_samples=int(keep.sum()),
    )
