"""Metrics accumulated over micro-batches on one rank, then reduced over all ranks in one collective."""

from __future__ import annotations

from collections import defaultdict

import torch
import torch.distributed as dist


class MetricSums:
    """Weighted sums: ``add_mean(name, value, weight)`` for token-weighted means, ``add_sum(name, value)`` for
    totals, ``add_max(name, value)`` for maxima; :meth:`reduce` returns plain floats, identical on every rank."""

    def __init__(self) -> None:
        self._num: dict[str, float] = defaultdict(float)
        self._den: dict[str, float] = defaultdict(float)
        self._sum: dict[str, float] = defaultdict(float)
        self._max: dict[str, float] = {}

    def add_mean(self, name: str, value: float | torch.Tensor, weight: float | torch.Tensor) -> None:
        w = float(weight)
        self._num[name] += float(value) * w
        self._den[name] += w

    def add_sum(self, name: str, value: float | torch.Tensor) -> None:
        self._sum[name] += float(value)

    def add_max(self, name: str, value: float | torch.Tensor) -> None:
        v = float(value)
        self._max[name] = max(self._max.get(name, v), v)

    def reduce(self, device: torch.device | str = "cpu") -> dict[str, float]:
        """Reduce over the default process group; the reduced tensors live on ``device`` (the worker's device:
        an NCCL world cannot reduce CPU tensors)."""
        means = sorted(self._num)
        sums = sorted(self._sum)
        maxes = sorted(self._max)
        flat = torch.tensor(
            [self._num[k] for k in means] + [self._den[k] for k in means] + [self._sum[k] for k in sums],
            dtype=torch.float64,
            device=device,
        )
        peak = torch.tensor([self._max[k] for k in maxes], dtype=torch.float64, device=device)
        if dist.is_initialized() and dist.get_world_size() > 1:
            if flat.numel():
                dist.all_reduce(flat)
            if peak.numel():
                dist.all_reduce(peak, op=dist.ReduceOp.MAX)
        flat, peak = flat.cpu(), peak.cpu()
        n = len(means)
        out: dict[str, float] = {}
        for i, k in enumerate(means):
            den = flat[n + i].item()
            out[k] = flat[i].item() / den if den > 0 else 0.0
        for i, k in enumerate(sums):
            out[k] = flat[2 * n + i].item()
        for i, k in enumerate(maxes):
            out[k] = peak[i].item()
        return out
