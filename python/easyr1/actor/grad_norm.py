"""Gradient-norm clipping for FSDP2 gradients (DTensor shards), whatever device the shards live on.

``torch.nn.utils.clip_grad_norm_`` reduces DTensor gradients through DTensor's own collectives on the gradients'
device. With ``fsdp.enable_cpu_offload`` the shards are CPU tensors on a CUDA mesh, and that reduction fails on
an NCCL world (and would be a gloo reduction of every shard's norm at best). Here each rank takes the norm of its
local shards on their device, the per-rank partial results — one number per process group — are reduced on the
worker's collective device, and the gradients are scaled in place on their own device.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t


def _sharded_group(grad: torch.Tensor) -> Any | None:
    """The process group a DTensor gradient is sharded over, or ``None`` when every rank holds all of it."""
    from torch.distributed.tensor import DTensor, Replicate, Shard

    if not isinstance(grad, DTensor):
        return None
    mesh, placements = grad.device_mesh, grad.placements
    sharded = [dim for dim, p in enumerate(placements) if isinstance(p, Shard)]
    if any(not isinstance(p, Shard | Replicate) for p in placements):
        raise ValueError(f"gradient placements {placements}: expected Shard or Replicate")
    if not sharded:
        return None
    if mesh.ndim != 1:
        raise ValueError(f"gradient norms over a {mesh.ndim}-D mesh are not supported (FSDP2 here uses 1-D)")
    return mesh.get_group(0)


def _partial(grads: list[torch.Tensor], norm_type: float) -> torch.Tensor:
    """Σ|g|^p (or max |g| for p = inf) over the local shards, as a float32 0-dim tensor on the shards' device."""
    device = grads[0].device
    parts = [
        torch.linalg.vector_norm(g, norm_type, dtype=torch.float32).to(device)
        for g in grads
        if g.numel()  # an uneven shard may be empty on some ranks
    ]
    if not parts:
        return torch.zeros((), dtype=torch.float32, device=device)
    stacked = torch.stack(parts)
    return stacked.max() if math.isinf(norm_type) else stacked.pow(norm_type).sum()


def clip_grad_norm_(
    params: Iterable[torch.Tensor],
    max_norm: float,
    *,
    device: torch.device | str,
    norm_type: float = 2.0,
) -> float:
    """Scale the gradients of ``params`` in place so that their total ``norm_type``-norm is at most ``max_norm``;
    returns the total norm before clipping (identical on every rank; a collective: all ranks must call it with
    the same parameters). Non-finite norms are returned without touching the gradients (the caller skips the
    step). ``device`` is where the per-rank partial norms are reduced: the worker's device."""
    norm_type = float(norm_type)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    reduce_op = dist.ReduceOp.MAX if math.isinf(norm_type) else dist.ReduceOp.SUM
    by_group: dict[int, tuple[Any, list[torch.Tensor]]] = {}
    replicated: list[torch.Tensor] = []
    for grad in grads:
        group = _sharded_group(grad)
        if group is None:
            replicated.append(_local(grad))
        else:
            by_group.setdefault(id(group), (group, []))[1].append(_local(grad))
    partials = []
    for group, locals_ in by_group.values():  # insertion order: the same on every rank
        by_device: dict[torch.device, list[torch.Tensor]] = {}
        for g in locals_:
            by_device.setdefault(g.device, []).append(g)
        acc = [_partial(gs, norm_type).to(device) for gs in by_device.values()]
        total = torch.stack(acc).max() if math.isinf(norm_type) else torch.stack(acc).sum()
        total = total.reshape(1).to(device, copy=True)
        dist.all_reduce(total, op=reduce_op, group=group)
        partials.append(total[0])
    for g in replicated:
        partials.append(_partial([g], norm_type).to(device))
    stacked = torch.stack(partials)
    if math.isinf(norm_type):
        total_norm = float(stacked.max())
    else:
        total_norm = float(stacked.sum()) ** (1.0 / norm_type)
    if not math.isfinite(total_norm):
        return total_norm
    coef = max_norm / (total_norm + 1e-6)
    if coef < 1.0:
        for grad in grads:
            _local(grad).mul_(coef)
    return total_norm
