"""The GRPO family as pure tensor math: advantages, policy losses, KL, aggregation, entropy, group filtering.

Nothing here imports more than torch: no Ray, no transformers, no I/O. Formulas: ``docs/algorithms.md``.

Driver side (once per rollout batch; B responses, T response tokens)::

    from easyr1 import algorithms as alg

    # Optional DAPO dynamic sampling: keep groups whose scores spread.
    filt = alg.filter_groups(scores, uids, valid, std_threshold=cfg.filter_std_threshold)

    # KL as a reward penalty (algorithm.use_kl_loss=False) — otherwise skip this.
    ctrl = alg.make_kl_controller(cfg.kl_type, cfg.kl_coef, cfg.kl_target, cfg.kl_horizon)   # once, at start
    penalty, current_kl = alg.kl_reward_penalty(old_logprob, ref_logprob, response_mask, cfg.kl_penalty, ctrl.value)
    ctrl.update(current_kl.item(), n_steps=B)

    adv = alg.compute_advantage(cfg.adv_estimator, scores, uids, valid, eps=cfg.norm_eps, gamma=cfg.gamma,
                                response_mask=response_mask, token_rewards=penalty)   # (B,) or (B,T)
    token_adv = alg.broadcast_to_tokens(adv, response_mask)                               # (B,T)
    sample_mask = alg.effective_sample_mask(cfg.adv_estimator, uids, valid)               # (B,) bool
    loss_mask = response_mask.bool() & sample_mask[:, None]                               # (B,T): ship to actor

Actor side (one optimizer step over a mini-batch split into K micro-batches on each of D data-parallel ranks).
The losses are scaled so that calling ``backward()`` on every micro-batch loss, without dividing by K, and letting
FSDP/DDP average gradients over ranks gives exactly the gradient of one big batch::

    mode = actor_cfg.loss_agg_mode
    pg_mode = alg.policy_agg_mode(actor_cfg.loss_type, mode)        # GSPO forces seq-mean-token-mean
    pg_norm = sum(alg.agg_normaliser(mb["loss_mask"], pg_mode) for mb in micro_batches)
    kl_norm = sum(alg.agg_normaliser(mb["loss_mask"], mode) for mb in micro_batches)
    torch.distributed.all_reduce(pg_norm); torch.distributed.all_reduce(kl_norm)   # SUM over DP ranks
    scale = dict(dp_size=D, norm_length=max_response_length)
    loss_fn = alg.get_policy_loss(actor_cfg.loss_type)
    for mb in micro_batches:
        logits = model(...).logits[:, -T-1:-1]                      # (b,T,V) logits predicting the response
        logprob = alg.logprobs_from_logits(logits, mb["responses"], actor_cfg.entropy_chunk_size)
        loss, metrics = loss_fn(mb["old_logprob"], logprob, mb["advantages"], mb["loss_mask"],
                                clip_ratio_low=..., clip_ratio_high=..., clip_ratio_dual=...,
                                loss_agg_mode=mode, global_normaliser=pg_norm, **scale)
        if use_kl_loss:
            kl = alg.kl_penalty(logprob, mb["ref_logprob"], cfg.kl_penalty)
            loss = loss + cfg.kl_coef * alg.agg_loss(kl, mb["loss_mask"], mode, global_normaliser=kl_norm, **scale)
        if actor_cfg.entropy_coeff:
            ent = alg.entropy_from_logits(logits, actor_cfg.entropy_chunk_size)
            loss = loss - actor_cfg.entropy_coeff * alg.agg_loss(ent, mb["loss_mask"], mode,
                                                                  global_normaliser=kl_norm, **scale)
        loss.backward()
    optimizer.step()

With a single mini-batch and one PPO epoch, ``old_logprob`` may be ``logprob.detach()`` (ratio 1 at the start).
Metrics are means over each call's tokens; weight them by ``metrics["tokens"]`` when averaging micro-batches.
"""

from __future__ import annotations

from .advantage import (
    ADVANTAGE_ESTIMATORS,
    GRPO_EPS,
    AdvantageEstimator,
    AdvantageInputs,
    broadcast_to_tokens,
    compute_advantage,
    effective_sample_mask,
    get_advantage_estimator,
    place_sequence_reward,
    register_advantage_estimator,
    returns_to_go,
)
from .aggregation import LOSS_AGG_MODES, agg_loss, agg_normaliser
from .entropy import entropy_from_logits, logprobs_from_logits
from .filtering import GroupFilterResult, filter_groups
from .groups import GroupStats, dense_group_ids, group_stats
from .kl import (
    KL_KINDS,
    AdaptiveKLController,
    FixedKLController,
    kl_penalty,
    kl_reward_penalty,
    make_kl_controller,
)
from .masking import masked_mean, masked_sum, masked_var, masked_whiten
from .policy_loss import POLICY_LOSSES, get_policy_loss, gspo_loss, policy_agg_mode, policy_loss

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "GRPO_EPS",
    "KL_KINDS",
    "LOSS_AGG_MODES",
    "POLICY_LOSSES",
    "AdaptiveKLController",
    "AdvantageEstimator",
    "AdvantageInputs",
    "FixedKLController",
    "GroupFilterResult",
    "GroupStats",
    "agg_loss",
    "agg_normaliser",
    "broadcast_to_tokens",
    "compute_advantage",
    "dense_group_ids",
    "effective_sample_mask",
    "entropy_from_logits",
    "filter_groups",
    "get_advantage_estimator",
    "get_policy_loss",
    "group_stats",
    "gspo_loss",
    "kl_penalty",
    "kl_reward_penalty",
    "logprobs_from_logits",
    "make_kl_controller",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "place_sequence_reward",
    "policy_agg_mode",
    "policy_loss",
    "register_advantage_estimator",
    "returns_to_go",
]
