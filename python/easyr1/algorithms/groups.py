"""Prompt groups: turn a per-sample group label into dense ids and compute masked per-group statistics.

A *group* is the ``n`` responses sampled for one prompt. Group statistics are taken over the **valid** samples of a
group only (a failed editor/judge/parse call makes a sample invalid); a group with fewer than ``min_valid`` valid
samples has no usable statistics and is reported as such (``usable`` is False for it).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch


def dense_group_ids(group_index: torch.Tensor | Sequence[Hashable], size: int, device: torch.device) -> torch.Tensor:
    """Map per-sample group labels (ints, strings, uids…) to dense ids ``0..G-1`` as a (B,) long tensor.

    Ids follow the order of first appearance for non-tensor labels and sorted order for tensor labels; only
    equality of labels matters to every caller.
    """
    if isinstance(group_index, torch.Tensor):
        if group_index.dim() != 1 or group_index.shape[0] != size:
            raise ValueError(f"group_index must have shape ({size},), got {tuple(group_index.shape)}")
        if group_index.dtype.is_floating_point or group_index.dtype.is_complex:
            raise ValueError("group_index must hold integer labels, got a floating-point tensor")
        _, inverse = torch.unique(group_index, return_inverse=True)
        return inverse.to(device=device, dtype=torch.long)
    labels = list(group_index)
    if len(labels) != size:
        raise ValueError(f"group_index has {len(labels)} labels for {size} samples")
    seen: dict[Hashable, int] = {}
    ids = [seen.setdefault(label, len(seen)) for label in labels]
    return torch.tensor(ids, dtype=torch.long, device=device)


@dataclass
class GroupStats:
    """Per-group statistics over valid samples. Group tensors are (G,), sample tensors are (B,)."""

    ids: torch.Tensor
    """(B,) dense group id of each sample."""
    count: torch.Tensor
    """(G,) number of valid samples per group (float)."""
    mean: torch.Tensor
    """(G,) mean of the valid scores (0 for a group with no valid sample)."""
    std: torch.Tensor
    """(G,) unbiased (N−1) std of the valid scores (0 for a group with fewer than 2 valid samples)."""
    usable: torch.Tensor
    """(G,) bool: the group has at least ``min_valid`` valid samples."""
    centered: torch.Tensor
    """(B,) ``s_i − mean_g``, computed exactly (0 for every sample of an all-equal group; 0 for invalid samples)."""

    @property
    def num_groups(self) -> int:
        return int(self.count.shape[0])

    def per_sample(self, group_values: torch.Tensor) -> torch.Tensor:
        """Gather a (G,) tensor onto the samples: (B,)."""
        return group_values[self.ids]


def group_stats(
    scores: torch.Tensor,
    group_index: torch.Tensor | Sequence[Hashable],
    valid: torch.Tensor,
    min_valid: int = 2,
) -> GroupStats:
    """Masked per-group mean and unbiased std of ``scores`` (B,) over samples where ``valid`` (B,) is True.

    Scores of invalid samples are ignored entirely (they may be NaN). The computation subtracts each group's
    maximum valid score first, so an all-equal group gives exactly zero deviations whatever its magnitude.
    """
    size = scores.shape[0]
    ids = dense_group_ids(group_index, size, scores.device)
    num_groups = int(ids.max().item()) + 1 if size else 0
    zero = torch.zeros((), dtype=scores.dtype, device=scores.device)
    safe = torch.where(valid, scores, zero)
    weight = valid.to(scores.dtype)

    count = torch.zeros(num_groups, dtype=scores.dtype, device=scores.device).index_add_(0, ids, weight)
    neg_inf = torch.full((), float("-inf"), dtype=scores.dtype, device=scores.device)
    anchor = torch.full((num_groups,), float("-inf"), dtype=scores.dtype, device=scores.device)
    anchor = anchor.scatter_reduce(0, ids, torch.where(valid, scores, neg_inf), reduce="amax", include_self=True)
    anchor = torch.where(count > 0, anchor, torch.zeros_like(anchor))

    shifted = torch.where(valid, safe - anchor[ids], zero)
    shifted_sum = torch.zeros(num_groups, dtype=scores.dtype, device=scores.device).index_add_(0, ids, shifted)
    shifted_mean = shifted_sum / count.clamp(min=1)
    centered = torch.where(valid, shifted - shifted_mean[ids], zero)
    sq = torch.zeros(num_groups, dtype=scores.dtype, device=scores.device).index_add_(0, ids, centered**2)
    var = sq / (count - 1).clamp(min=1)
    std = torch.where(count > 1, var.sqrt(), torch.zeros_like(var))
    mean = torch.where(count > 0, anchor + shifted_mean, torch.zeros_like(anchor))
    return GroupStats(ids=ids, count=count, mean=mean, std=std, usable=count >= min_valid, centered=centered)
