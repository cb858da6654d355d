"""FSDP2 plumbing: the process group, sharding the policy, full tensors out, idle offloading."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Collection, Iterator
from typing import Any

import torch
import torch.distributed as dist

from easyr1.config.actor import FSDPConfig
from easyr1.models.loading import decoder_layers, vision_tower

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def process_group_backend(device: str) -> str:
    """The actor world's backend for a worker on ``device``: ``gloo`` on CPU; on CUDA ``cpu:gloo,cuda:nccl`` —
    NCCL for CUDA tensors and gloo for CPU tensors, so a CPU tensor that still reaches a collective (DCP's
    object collectives, a barrier, a future call site) works instead of failing with "No backend type
    associated with device type cpu". The actor's own reductions put their tensors on the worker's device
    (:func:`collective_device`), so the hot path never goes through gloo."""
    return "cpu:gloo,cuda:nccl" if torch.device(device).type == "cuda" else "gloo"


def collective_device(device: str) -> torch.device:
    """Where tensors handed to the actor world's collectives live: the worker's device (``cuda`` means the
    current CUDA device)."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return dev


def init_process_group(host: str, port: int, rank: int, world_size: int, backend: str, timeout_s: float = 1800) -> None:
    """Join the actor's torch.distributed world (``backend`` from :func:`process_group_backend`) by TCP rendezvous
    at rank 0."""
    if dist.is_initialized():
        return
    dist.init_process_group(
        backend=backend,
        init_method=f"tcp://{host}:{port}",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    logger.info("actor rank %d/%d joined (%s)", rank, world_size, backend)


def device_mesh(device: str, world_size: int) -> Any:
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh("cuda" if device.startswith("cuda") else "cpu", (world_size,), mesh_dim_names=("dp",))


def apply_fsdp2(
    model: torch.nn.Module,
    *,
    mesh: Any,
    fsdp: FSDPConfig,
    device: str,
    cpu_offload: bool = False,
    mixed_precision: bool | None = None,
) -> torch.nn.Module:
    """``fully_shard`` each vision block, each decoder layer, then the root (in place; returns ``model``).

    ``mixed_precision`` (default ``fsdp.mixed_precision``) computes in ``fsdp.param_dtype`` and reduces gradients
    in ``fsdp.reduce_dtype``; ``cpu_offload`` keeps parameters (and gradients) on CPU between uses — only
    meaningful on GPU, ignored on CPU.
    """
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

    use_mp = fsdp.mixed_precision if mixed_precision is None else mixed_precision
    mp = (
        MixedPrecisionPolicy(param_dtype=_DTYPES[fsdp.param_dtype], reduce_dtype=_DTYPES[fsdp.reduce_dtype])
        if use_mp
        else MixedPrecisionPolicy()
    )
    offload = CPUOffloadPolicy() if cpu_offload and device.startswith("cuda") else OffloadPolicy()
    kwargs = {"mesh": mesh, "reshard_after_forward": fsdp.enable_full_shard, "mp_policy": mp, "offload_policy": offload}
    units = [*getattr(vision_tower(model), "blocks", []), *decoder_layers(model)]
    for unit in units:
        fully_shard(unit, **kwargs)
    fully_shard(model, **kwargs)
    return model


def iter_full_tensors(
    model: torch.nn.Module,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    names: Collection[str] | None = None,
    to_cpu: bool = False,
    keep_dtype: Collection[str] = (),
) -> Iterator[tuple[str, torch.Tensor]]:
    """State-dict entries as full tensors, one at a time (a collective: all ranks must iterate together).

    Each local shard is first moved to ``device`` (the worker's collective device: CPU-offloaded shards are
    gathered by NCCL on the GPU) and floating shards are cast to ``dtype`` *before* the all-gather, so the
    gather moves and materialises e.g. bf16, not the fp32 masters. ``names`` restricts (and keeps state-dict
    order) to those entries — every rank must pass the same set; entries in ``keep_dtype`` are gathered in their
    own dtype (inputs of further fp32 arithmetic, e.g. LoRA merges).
    """
    from torch.distributed.tensor import DTensor

    for name, value in model.state_dict().items():
        if names is not None and name not in names:
            continue
        cast = dtype if dtype is not None and value.is_floating_point() and name not in keep_dtype else value.dtype
        if isinstance(value, DTensor):
            local = value.to_local().to(device=device, dtype=cast)
            full = DTensor.from_local(
                local, value.device_mesh, value.placements, shape=value.shape, stride=value.stride()
            ).full_tensor()
        else:
            full = value.to(device=device, dtype=cast)
        yield name, (full.cpu() if to_cpu else full)


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded state dict on CPU, on rank 0 only (other ranks get ``{}``); all ranks must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def state_specs(model: torch.nn.Module) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    """``(name, full shape, dtype)`` of every state-dict entry, in state-dict order (no communication)."""
    return [(name, tuple(value.shape), value.dtype) for name, value in model.state_dict().items()]


def move_model(model: torch.nn.Module, device: str) -> None:
    """Move the (sharded) parameters and buffers; used for idle offloading on GPU."""
    model.to(device)


def move_optimizer(optimizer: torch.optim.Optimizer, device: str) -> None:
    for state in optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and key != "step":
                state[key] = value.to(device, non_blocking=True)
