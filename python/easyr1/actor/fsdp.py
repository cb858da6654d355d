"""FSDP2 plumbing: the process group, sharding the policy, full tensors out, idle offloading."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist

from easyr1.config.actor import FSDPConfig
from easyr1.models.loading import decoder_layers, vision_tower

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def init_process_group(host: str, port: int, rank: int, world_size: int, backend: str, timeout_s: float = 1800) -> None:
    """Join the actor's torch.distributed world (gloo on CPU, NCCL on GPU) by TCP rendezvous at rank 0."""
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


def iter_full_tensors(model: torch.nn.Module, *, to_cpu: bool = False) -> Iterator[tuple[str, torch.Tensor]]:
    """Every state-dict entry as a full tensor, one at a time (a collective: all ranks must iterate together)."""
    from torch.distributed.tensor import DTensor

    nccl = dist.is_initialized() and dist.get_backend() == "nccl"
    for name, value in model.state_dict().items():
        if isinstance(value, DTensor) and nccl and value.device.type == "cpu":
            value = value.to("cuda")  # CPU-offloaded shards: NCCL gathers GPU tensors only
        full = value.full_tensor() if isinstance(value, DTensor) else value
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
