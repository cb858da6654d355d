"""``worker.actor`` and ``worker.ref``: the FSDP2 policy and its frozen reference (EasyR1 layout)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from easyr1.core.registries import POLICY_FAMILIES

from .base import ConfigError, check_choice, check_non_negative, check_positive, check_range

LOSS_AGG_MODES = ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"]


@dataclass
class ModelConfig:
    model_path: str = "tiny/policy"
    """Local directory of the policy (a Hugging Face model folder: tiny or Qwen2.5-VL-7B)."""
    tokenizer_path: str | None = None
    """Tokenizer/processor directory; ``None`` means ``model_path``."""
    trust_remote_code: bool = False
    """Passed to transformers' ``from_pretrained``."""
    dtype: str = "auto"
    """Weights dtype: ``auto`` (bf16 on GPU, fp32 on CPU), ``float32``, ``bfloat16`` or ``float16``."""
    attn_implementation: str = "auto"
    """``auto`` (flash_attention_2 on GPU when installed, else sdpa), ``sdpa``, ``eager`` or ``flash_attention_2``."""
    freeze_vision_tower: bool = False
    """Do not train the vision encoder."""
    enable_gradient_checkpointing: bool = True
    """Recompute activations in the backward pass (memory for compute)."""
    model_family: str = "auto"
    """Policy model family (a ``config.json`` ``model_type``: ``qwen2_5_vl``, ``qwen3_vl``, …). ``auto`` reads it
    from ``model_path``; a named family must match that folder, and is the family ``easyr1 demo`` builds its tiny
    policy as when ``model_path`` has none yet (``auto``: ``qwen2_5_vl``)."""

    def validate(self, path: str) -> Iterator[ConfigError]:
        yield from check_choice(f"{path}.model_family", self.model_family, ["auto", *POLICY_FAMILIES.names()])
        yield from check_choice(f"{path}.dtype", self.dtype, ["auto", "float32", "bfloat16", "float16"])
        yield from check_choice(
            f"{path}.attn_implementation", self.attn_implementation, ["auto", "sdpa", "eager", "flash_attention_2"]
        )


@dataclass
class OptimConfig:
    strategy: str = "adamw"
    """Optimizer: ``adamw`` (states in the parameters' dtype: fp32 with mixed precision) or ``adamw_bf16`` (AdamW
    with bf16 ``exp_avg``/``exp_avg_sq``, as in EasyR1: half the optimizer-state memory; the update is computed
    in fp32)."""
    lr: float = 1e-6
    """Peak learning rate."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW betas."""
    weight_decay: float = 1e-2
    """AdamW weight decay."""
    lr_warmup_ratio: float = 0.0
    """Fraction of the total steps used for linear warm-up (ignored when ``lr_warmup_steps`` is set)."""
    lr_warmup_steps: int | None = None
    """Warm-up steps; overrides ``lr_warmup_ratio``."""
    lr_scheduler_type: str = "constant"
    """After warm-up: ``constant`` or ``cosine`` decay to ``min_lr_ratio`` × lr."""
    min_lr_ratio: float = 0.0
    """Floor of the cosine decay relative to ``lr``."""

    def validate(self, path: str) -> Iterator[ConfigError]:
        yield from check_choice(f"{path}.strategy", self.strategy, ["adamw", "adamw_bf16"])
        yield from check_positive(f"{path}.lr", self.lr)
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            yield ConfigError(f"{path}.betas", self.betas, "must be two numbers in [0, 1)")
        yield from check_non_negative(f"{path}.weight_decay", self.weight_decay)
        yield from check_range(f"{path}.lr_warmup_ratio", self.lr_warmup_ratio, low=0.0, high=1.0)
        if self.lr_warmup_steps is not None:
            yield from check_non_negative(f"{path}.lr_warmup_steps", self.lr_warmup_steps)
        yield from check_choice(f"{path}.lr_scheduler_type", self.lr_scheduler_type, ["constant", "cosine"])
        yield from check_range(f"{path}.min_lr_ratio", self.min_lr_ratio, low=0.0, high=1.0)


@dataclass
class FSDPConfig:
    enable_full_shard: bool = True
    """Shard parameters, gradients and optimizer state (FSDP2 ``reshard_after_forward=True``)."""
    enable_cpu_offload: bool = False
    """FSDP2 ``CPUOffloadPolicy`` (parameters and gradients live on CPU between uses)."""
    enable_rank0_init: bool = False
    """Load weights on rank 0 only and broadcast (saves host memory on big models)."""
    mixed_precision: bool = False
    """bf16 compute with fp32 gradient reduction (``MixedPrecisionPolicy``)."""
    param_dtype: str = "bfloat16"
    """Compute dtype under mixed precision."""
    reduce_dtype: str = "float32"
    """Gradient reduction dtype under mixed precision."""

    def validate(self, path: str) -> Iterator[ConfigError]:
        yield from check_choice(f"{path}.param_dtype", self.param_dtype, ["bfloat16", "float16", "float32"])
        yield from check_choice(f"{path}.reduce_dtype", self.reduce_dtype, ["bfloat16", "float32"])


@dataclass
class OffloadConfig:
    offload_params: bool = False
    """Move parameters to CPU while the actor is idle (rollout, editing)."""
    offload_optimizer: bool = False
    """Move optimizer state to CPU while the actor is idle."""


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoRAConfig:
    rank: int = 0
    """LoRA rank r of the language model's adapters; 0 turns LoRA off (full fine-tuning)."""
    alpha: float = 16.0
    """LoRA alpha: the adapter update is scaled by ``alpha / rank``."""
    dropout: float = 0.0
    """Dropout on the adapters' input during training (0 keeps the update deterministic)."""
    target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    """Names of the language model's linear layers that get adapters (matched on the last name component, in the
    decoder layers only: the vision tower never gets adapters; it stays frozen or fully trained per
    ``worker.actor.model.freeze_vision_tower``)."""
    sync: str = "auto"
    """What a weight sync sends: ``adapters`` (the LoRA matrices only, after one full sync: the ``hf`` engine
    serves them as peft layers, vLLM through its own LoRA loading — ``enable_lora``, one ``LoRARequest`` per
    sync), ``merged`` (base + adapter product of every adapted layer, loaded like full weights), or ``auto``
    (``adapters`` for the ``hf`` engine, ``merged`` for vLLM: no LoRA kernels in its generation)."""

    @property
    def enabled(self) -> bool:
        return self.rank > 0

    def sync_mode(self, engine: str) -> str:
        """``sync`` resolved for rollout engine ``engine`` (``adapters`` or ``merged``)."""
        if self.sync == "auto":
            return "adapters" if engine == "hf" else "merged"
        if self.sync == "adapters" and engine not in ("hf", "vllm"):
            raise ValueError(
                f"worker.actor.lora.sync=adapters needs an engine that serves LoRA adapters (hf or vllm); the "
                f"{engine} engine loads merged weights (worker.actor.lora.sync=merged or auto)"
            )
        return self.sync

    def validate(self, path: str) -> Iterator[ConfigError]:
        yield from check_non_negative(f"{path}.rank", self.rank)
        if self.rank > 0:
            yield from check_positive(f"{path}.alpha", self.alpha)
        yield from check_range(f"{path}.dropout", self.dropout, low=0.0, high=1.0, high_inclusive=False)
        if not self.target_modules:
            yield ConfigError(f"{path}.target_modules", self.target_modules, "must name at least one module")
        for name in self.target_modules:
            if not isinstance(name, str) or not name.isidentifier():
                yield ConfigError(f"{path}.target_modules", self.target_modules, f"{name!r} is not a module name")
        yield from check_choice(f"{path}.sync", self.sync, ["auto", "adapters", "merged"])


@dataclass
class ActorConfig:
    strategy: str = "fsdp"
    """Training strategy; FSDP2 is the only one."""
    num_workers: int = 1
    """Actor processes (one per GPU on a cluster; CPU processes locally) forming one torch.distributed world."""
    global_batch_size: int = 8
    """Prompts per optimizer step (a mini-batch) across all actor workers, EasyR1-style: the mini-batch holds
    ``global_batch_size × worker.rollout.n`` responses."""
    micro_batch_size_per_device_for_update: int = 2
    """Responses per forward/backward on one worker during the update (gradient accumulation in between)."""
    micro_batch_size_per_device_for_experience: int = 8
    """Responses per forward on one worker when computing old/reference log-probs."""
    dynamic_batching: bool = False
    """Pack micro-batches by token budget (``max_token_len_per_device``) instead of a fixed count."""
    max_token_len_per_device: int = 16384
    """Token budget of one micro-batch under dynamic batching."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    ppo_epochs: int = 1
    """Passes over the rollout batch per step."""
    loss_type: str = "ppo"
    """Policy loss: ``ppo`` (token-level clip) or ``gspo`` (sequence-level ratio)."""
    clip_ratio_low: float = 0.2
    """PPO clip ε below 1."""
    clip_ratio_high: float = 0.2
    """PPO clip ε above 1 (DAPO clip-higher uses 0.28)."""
    clip_ratio_dual: float = 3.0
    """Dual-clip constant c (> 1) for negative advantages."""
    loss_agg_mode: str = "token-mean"
    """Loss aggregation: token-mean, seq-mean-token-sum, seq-mean-token-mean, seq-mean-token-sum-norm."""
    entropy_coeff: float = 0.0
    """Entropy bonus coefficient (0 disables)."""
    entropy_chunk_size: int = 1024
    """Sequence chunk used when computing entropy from logits (bounds memory)."""
    seed: int = 1
    """Seed for the actor's RNG (dropout, sampling inside the update)."""
    max_restarts: int = 2
    """Times the actor pool is rebuilt over the run (-1: no limit) after one of its workers died during a step
    (SIGKILL, OOM kill, node loss): every rank is started again (FSDP state is sharded), model and optimizer are
    restored from the newest complete checkpoint, the driver rewinds its data position and RNG to it, re-syncs the
    rollout engines and trains the steps after it again (counted as ``actor/restarts``); before the first
    checkpoint the ranks start again from ``model.model_path`` and the run from step 1. Beyond it, or in a resumed
    run without a checkpoint left to restore, the run stops with one line naming the worker and the cause."""
    call_timeout_s: float = 3600.0
    """Deadline of one actor pool call over all ranks (``update_policy`` of a whole rollout batch, log-probs, a
    checkpoint save or load, the model set-up of a restart). A rank still in the call past it counts as hung: it is
    killed and the pool is rebuilt like after a lost worker (``max_restarts``; counted as ``actor/call_timeouts``).
    Keep it well above the longest healthy call (``timing/update_s``, ``timing/checkpoint_s`` of past steps); a
    positive number: every call has a deadline."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Policy model."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimizer and schedule."""
    fsdp: FSDPConfig = field(default_factory=FSDPConfig)
    """FSDP2 sharding."""
    offload: OffloadConfig = field(default_factory=OffloadConfig)
    """Idle-time offloading."""
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    """LoRA adapters on the language model (``rank`` 0: full fine-tuning)."""

    def validate(self, path: str) -> Iterator[ConfigError]:
        yield from check_choice(f"{path}.strategy", self.strategy, ["fsdp", "fsdp2"])
        yield from check_positive(f"{path}.num_workers", self.num_workers)
        yield from check_positive(f"{path}.global_batch_size", self.global_batch_size)
        yield from check_positive(
            f"{path}.micro_batch_size_per_device_for_update", self.micro_batch_size_per_device_for_update
        )
        yield from check_positive(
            f"{path}.micro_batch_size_per_device_for_experience", self.micro_batch_size_per_device_for_experience
        )
        yield from check_positive(f"{path}.max_token_len_per_device", self.max_token_len_per_device)
        yield from check_positive(f"{path}.max_grad_norm", self.max_grad_norm)
        yield from check_positive(f"{path}.ppo_epochs", self.ppo_epochs)
        yield from check_choice(f"{path}.loss_type", self.loss_type, ["ppo", "gspo"])
        yield from check_range(f"{path}.clip_ratio_low", self.clip_ratio_low, low=0.0, high=1.0)
        yield from check_non_negative(f"{path}.clip_ratio_high", self.clip_ratio_high)
        yield from check_range(f"{path}.clip_ratio_dual", self.clip_ratio_dual, low=1.0, low_inclusive=False)
        yield from check_choice(f"{path}.loss_agg_mode", self.loss_agg_mode, LOSS_AGG_MODES)
        yield from check_non_negative(f"{path}.entropy_coeff", self.entropy_coeff)
        yield from check_positive(f"{path}.entropy_chunk_size", self.entropy_chunk_size)
        if self.max_restarts < -1:
            yield ConfigError(f"{path}.max_restarts", self.max_restarts, "must be -1 or at least 0")
        yield from check_positive(f"{path}.call_timeout_s", self.call_timeout_s)


@dataclass
class RefConfig:
    offload_params: bool = True
    """Keep the frozen reference on CPU between uses."""
    micro_batch_size_per_device_for_experience: int = 8
    """Responses per forward when computing reference log-probs."""

    def validate(self, path: str) -> Iterator[ConfigError]:
        yield from check_positive(
            f"{path}.micro_batch_size_per_device_for_experience", self.micro_batch_size_per_device_for_experience
        )
