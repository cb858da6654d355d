"""What each actor worker needs to know, derived once from the full config by the pool."""

from __future__ import annotations

from dataclasses import dataclass, field

from easyr1.config import EasyR1Config
from easyr1.config.actor import ActorConfig, OptimConfig, RefConfig
from easyr1.config.algorithm import AlgorithmConfig
from easyr1.config.cluster import PoolPlacement


@dataclass
class ActorSettings:
    actor: ActorConfig
    ref: RefConfig
    algorithm: AlgorithmConfig
    placement: PoolPlacement
    optim: OptimConfig
    """Optimizer and schedule in use (``actor.optim``, or the SFT learning rate for a warm start)."""
    total_steps: int | None = None
    """Optimizer steps the schedule spans (warm-up ratio, cosine); ``None`` for a constant schedule."""
    with_reference: bool = True
    """Reference log-probs are needed (a KL term). Full fine-tuning loads a frozen copy for them; with LoRA the
    reference is the policy itself with adapters disabled (no copy)."""
    rollout_n: int = 1
    """Responses per prompt (a mini-batch holds ``global_batch_size × rollout_n`` responses)."""
    norm_length: int = 4096
    """Maximum response length: the constant denominator of ``seq-mean-token-sum-norm``."""
    logprob_temperature: float = 1.0
    """Logits are divided by this before log-probs: the rollout's sampling temperature (as verl/EasyR1 do), so the
    PPO ratio and the gradient are taken under the distribution the responses were sampled from."""
    lora_sync: str = "merged"
    """With LoRA on: what a weight sync sends (``adapters`` or ``merged``), ``worker.actor.lora.sync`` resolved
    for the rollout engine (``auto``: adapters for the ``hf`` engine, merged weights for vLLM)."""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def lora(self) -> bool:
        """LoRA adapters on the language model (then the reference is the same model with adapters off)."""
        return self.actor.lora.enabled

    @property
    def use_kl_loss(self) -> bool:
        return self.algorithm.use_kl_loss and not self.algorithm.disable_kl


def needs_reference(cfg: EasyR1Config) -> bool:
    """Whether any KL term (loss or reward penalty) needs reference log-probs."""
    return not cfg.algorithm.disable_kl and (cfg.algorithm.use_kl_loss or cfg.algorithm.kl_coef > 0)


def actor_settings(
    cfg: EasyR1Config,
    *,
    total_steps: int | None = None,
    optim: OptimConfig | None = None,
    with_reference: bool | None = None,
) -> ActorSettings:
    rollout = cfg.worker.rollout
    return ActorSettings(
        actor=cfg.worker.actor,
        ref=cfg.worker.ref,
        algorithm=cfg.algorithm,
        placement=cfg.cluster.actor,
        optim=optim or cfg.worker.actor.optim,
        total_steps=total_steps,
        with_reference=needs_reference(cfg) if with_reference is None else with_reference,
        rollout_n=rollout.n,
        norm_length=rollout.response_length or cfg.data.max_response_length,
        logprob_temperature=rollout.temperature if rollout.temperature > 0 else 1.0,
        lora_sync=cfg.worker.actor.lora.sync_mode(rollout.name),
    )
