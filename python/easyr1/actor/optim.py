"""AdamW and the learning-rate schedule (linear warm-up, then constant or cosine decay)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from easyr1.config.actor import OptimConfig


def build_optimizer(params: Iterable[torch.nn.Parameter], optim: OptimConfig) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters: ``adamw`` keeps its two states in the parameters' dtype (fp32 masters
    under mixed precision), ``adamw_bf16`` in bf16 (:class:`BF16AdamW`, EasyR1's ``adamw_bf16``)."""
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise ValueError("the policy has no trainable parameters")
    kwargs = {
        "lr": optim.lr,
        "betas": (float(optim.betas[0]), float(optim.betas[1])),
        "weight_decay": optim.weight_decay,
    }
    if optim.strategy == "adamw_bf16":
        return BF16AdamW(trainable, **kwargs)
    if optim.strategy != "adamw":
        raise ValueError(f"unknown optim.strategy {optim.strategy!r}")
    return torch.optim.AdamW(trainable, **kwargs)


BF16_ADAMW_CHUNK = 1 << 22
"""Elements :class:`BF16AdamW` updates at once (its fp32 temporaries: gradient, m, v, denominator, parameter)."""


def _local(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's local shard (a view: in-place updates reach the DTensor), or the tensor itself."""
    return t.to_local() if hasattr(t, "to_local") else t


class BF16AdamW(torch.optim.Optimizer):
    """AdamW (decoupled weight decay, bias-corrected; the same update as ``torch.optim.AdamW``) whose
    ``exp_avg`` and ``exp_avg_sq`` are stored in ``state_dtype`` (bf16): 4 bytes of state per parameter instead
    of 8 with fp32 masters. Each update is computed in fp32 — states widened, the new states rounded once when
    stored — chunk by chunk, so the fp32 temporaries stay small (``chunk_numel`` elements each). The parameter
    keeps its own dtype. States of FSDP2 parameters are DTensors sharded like the parameter (distributed
    checkpoints save them like AdamW's); the arithmetic runs on the local shards.
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        *,
        state_dtype: torch.dtype = torch.bfloat16,
        chunk_numel: int = BF16_ADAMW_CHUNK,
    ):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})
        self.state_dtype = state_dtype
        self.chunk_numel = chunk_numel

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, eps, decay = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
            beta1, beta2 = (float(b) for b in group["betas"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0, dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, dtype=self.state_dtype, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(
                        p, dtype=self.state_dtype, memory_format=torch.preserve_format
                    )
                state["step"] = state["step"] + 1  # not in place: a loaded state dict may share it
                step = float(state["step"])
                step_size = lr / (1.0 - beta1**step)
                bias2_sqrt = math.sqrt(1.0 - beta2**step)
                param, grad = _local(p), _local(p.grad)
                m, v = _local(state["exp_avg"]), _local(state["exp_avg_sq"])
                for sl in self._chunks(param, grad, m, v):
                    g = grad.view(-1)[sl].float()
                    m32 = m.view(-1)[sl].float().lerp_(g, 1.0 - beta1)
                    v32 = v.view(-1)[sl].float().mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
                    m.view(-1)[sl].copy_(m32)
                    v.view(-1)[sl].copy_(v32)
                    w = param.view(-1)[sl]
                    w32 = w if w.dtype == torch.float32 else w.float()
                    w32.mul_(1.0 - lr * decay).addcdiv_(m32, v32.sqrt().div_(bias2_sqrt).add_(eps), value=-step_size)
                    if w32 is not w:
                        w.copy_(w32)
        return loss

    def _chunks(self, *tensors: torch.Tensor) -> list[slice]:
        n = tensors[0].numel()
        if not all(t.is_contiguous() for t in tensors):
            raise ValueError("BF16AdamW needs contiguous parameters, gradients and states")
        return [slice(i, min(i + self.chunk_numel, n)) for i in range(0, n, self.chunk_numel)]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """``Optimizer.load_state_dict`` casts floating states to the parameter's dtype; cast them back."""
        super().load_state_dict(state_dict)
        for state in self.state.values():
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state and state[key].dtype != self.state_dtype:
                    state[key] = state[key].to(self.state_dtype)


def warmup_steps(optim: OptimConfig, total_steps: int | None) -> int:
    if optim.lr_warmup_steps is not None:
        return int(optim.lr_warmup_steps)
    if optim.lr_warmup_ratio > 0:
        if not total_steps:
            raise ValueError("optim.lr_warmup_ratio needs the total number of optimizer steps")
        return int(optim.lr_warmup_ratio * total_steps)
    return 0


def lr_factor(step: int, *, warmup: int, total: int | None, kind: str, min_ratio: float) -> float:
    """Multiplier of the peak lr for optimizer step ``step`` (0-based): ``(step+1)/warmup`` during warm-up (the
    first update already moves), then 1 (``constant``) or a cosine from 1 to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    if kind != "cosine":
        raise ValueError(f"unknown lr_scheduler_type {kind!r}")
    if not total:
        raise ValueError("a cosine schedule needs the total number of optimizer steps")
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, optim: OptimConfig, total_steps: int | None
) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = warmup_steps(optim, total_steps)
    kind, min_ratio = optim.lr_scheduler_type, optim.min_lr_ratio
    if kind == "cosine" and not total_steps:
        raise ValueError("optim.lr_scheduler_type=cosine needs the total number of optimizer steps")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup=warmup, total=total_steps, kind=kind, min_ratio=min_ratio)
    )
