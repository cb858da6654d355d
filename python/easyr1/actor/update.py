"""The optimisation loops of an actor worker: PPO/GSPO over mini-batches and micro-batches, and the SFT step.

Normalisation is global: for every mini-batch each rank sums ``agg_normaliser`` over its micro-batches, the sums
are all-reduced, and every micro-batch loss is ``agg_loss(…, global_normaliser, dp_size=D)`` — so accumulating the
micro-batch gradients and letting FSDP average over the D ranks gives the gradient of one big batch
(``easyr1.algorithms.aggregation``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from easyr1 import algorithms as alg
from easyr1.models.forward import response_log_probs

from .batch import PolicyBatch, fixed_micro_batches
from .metrics import MetricSums

if TYPE_CHECKING:
    from .worker import ActorWorker


def _all_reduce_sum(value: torch.Tensor, worker: ActorWorker) -> torch.Tensor:
    """SUM over the actor world of a local value, on the worker's device (the collective's device rule)."""
    value = torch.as_tensor(value).to(worker.collective_device, copy=True)
    if worker.world_size > 1:
        dist.all_reduce(value)
    return value


def _loss_masks(batch: PolicyBatch, groups: list[list[int]], worker: ActorWorker) -> list[torch.Tensor]:
    """Per micro-batch (b, T_mb) masks: response tokens of valid samples (no model call needed)."""
    valid = batch.valid_mask()
    masks = []
    for idx in groups:
        width = max(len(batch.responses[i]) for i in idx)
        m = torch.zeros(len(idx), width, dtype=torch.bool)
        for row, i in enumerate(idx):
            m[row, : len(batch.responses[i])] = bool(valid[i])
        masks.append(m)
    return masks


def ppo_update(worker: ActorWorker, batch: PolicyBatch, mini_batch_size: int) -> dict[str, float]:
    s = worker.settings
    cfg, algo = s.actor, s.algorithm
    loss_fn = alg.get_policy_loss(cfg.loss_type)
    mode = cfg.loss_agg_mode
    pg_mode = alg.policy_agg_mode(cfg.loss_type, mode)
    d = worker.world_size
    scale = {"dp_size": d, "norm_length": s.norm_length}
    model = worker.model
    encoded = worker.encode(batch)
    sums = MetricSums()
    tokens_done = 0
    start = time.perf_counter()
    model.train()
    assert batch.old_log_probs is not None and batch.advantages is not None, "advantages and old log-probs needed"
    for _ in range(cfg.ppo_epochs):
        for mini_idx in fixed_micro_batches(len(batch), mini_batch_size):
            mini = batch.select(mini_idx)
            mini_enc = [encoded[i] for i in mini_idx]
            groups = worker.micro_batches(mini_enc, mini, cfg.micro_batch_size_per_device_for_update)
            masks = _loss_masks(mini, groups, worker)
            pg_norm = _all_reduce_sum(sum(alg.agg_normaliser(m, pg_mode) for m in masks), worker)
            kl_norm = _all_reduce_sum(sum(alg.agg_normaliser(m, mode) for m in masks), worker)
            step_loss = 0.0
            for idx, mask_cpu in zip(groups, masks, strict=True):
                inputs = worker.inputs(mini_enc, mini, idx)
                t = inputs.response_ids.shape[1]
                mask = mask_cpu.to(worker.device)
                want_entropy = cfg.entropy_coeff > 0
                logp, entropy = response_log_probs(
                    model,
                    inputs,
                    temperature=s.logprob_temperature,
                    with_entropy=True,
                    entropy_grad=want_entropy,
                    chunk_size=cfg.entropy_chunk_size,
                )
                sel = torch.as_tensor(idx)
                old = mini.token_tensor(mini.old_log_probs[sel], t).to(worker.device)
                adv = mini.advantages[sel]
                adv = (mini.token_tensor(adv, t) if adv.dim() == 2 else adv).to(worker.device)
                pg_loss, pg_metrics = loss_fn(
                    old,
                    logp,
                    adv,
                    mask,
                    clip_ratio_low=cfg.clip_ratio_low,
                    clip_ratio_high=cfg.clip_ratio_high,
                    clip_ratio_dual=cfg.clip_ratio_dual,
                    loss_agg_mode=mode,
                    global_normaliser=pg_norm,
                    **scale,
                )
                loss = pg_loss
                n_tok = float(mask.sum())
                if s.use_kl_loss:
                    ref = mini.token_tensor(mini.ref_log_probs[sel], t).to(worker.device)
                    kl = alg.kl_penalty(logp, ref, algo.kl_penalty)
                    kl_loss = alg.agg_loss(kl, mask, mode, global_normaliser=kl_norm, **scale)
                    loss = loss + algo.kl_coef * kl_loss
                    sums.add_sum("actor/kl_loss", kl_loss.detach() / d)
                    sums.add_mean("actor/kl", alg.masked_mean(kl.detach(), mask), n_tok)
                if want_entropy:
                    ent_loss = alg.agg_loss(entropy, mask, mode, global_normaliser=kl_norm, **scale)
                    loss = loss - cfg.entropy_coeff * ent_loss
                loss.backward()
                step_loss += float(loss.detach()) / d
                sums.add_sum("actor/pg_loss", pg_loss.detach() / d)
                for key, value in pg_metrics.items():
                    if key != "tokens":
                        sums.add_mean(f"actor/{key}", value, n_tok)
                if entropy is not None:  # always computed; in the graph only with an entropy bonus
                    sums.add_mean("actor/entropy", alg.masked_mean(entropy.detach(), mask), n_tok)
                sums.add_mean("actor/response_length", inputs.response_mask.sum(-1).float().mean(), len(idx))
                tokens_done += int(inputs.response_mask.sum())
            grad_norm, stepped = worker.optimizer_step()
            sums.add_sum("actor/loss", step_loss)
            sums.add_max("actor/grad_norm", grad_norm)
            sums.add_sum("actor/skipped_steps", 0.0 if stepped else 1.0 / d)
            sums.add_sum("actor/optimizer_steps", 1.0 / d)
    sums.add_sum("actor/tokens", tokens_done)
    metrics = sums.reduce(worker.collective_device)
    elapsed = time.perf_counter() - start
    steps = max(metrics.get("actor/optimizer_steps", 1.0), 1.0)
    for key in ("actor/pg_loss", "actor/kl_loss", "actor/loss"):
        if key in metrics:
            metrics[key] /= steps  # mean over optimizer steps
    metrics["actor/lr"] = worker.scheduler.get_last_lr()[0]
    metrics["actor/tokens_per_s"] = metrics["actor/tokens"] / max(elapsed, 1e-9)
    if s.use_kl_loss:
        metrics["actor/kl_coef"] = algo.kl_coef
    return metrics


def sft_update(worker: ActorWorker, batch: PolicyBatch) -> dict[str, float]:
    """Token-mean negative log-likelihood of the responses (one optimizer step over the whole shard)."""
    s = worker.settings
    d = worker.world_size
    model = worker.model
    encoded = worker.encode(batch)
    groups = worker.micro_batches(encoded, batch, s.actor.micro_batch_size_per_device_for_update)
    masks = _loss_masks(batch, groups, worker)
    norm = _all_reduce_sum(sum(alg.agg_normaliser(m, "token-mean") for m in masks), worker)
    sums = MetricSums()
    start = time.perf_counter()
    model.train()
    lr = worker.scheduler.get_last_lr()[0]
    for idx, mask_cpu in zip(groups, masks, strict=True):
        inputs = worker.inputs(encoded, batch, idx)
        mask = mask_cpu.to(worker.device)
        logp, _ = response_log_probs(model, inputs, chunk_size=s.actor.entropy_chunk_size)
        loss = alg.agg_loss(-logp, mask, "token-mean", global_normaliser=norm, dp_size=d)
        loss.backward()
        sums.add_sum("sft/loss", loss.detach() / d)
        sums.add_sum("sft/tokens", mask.sum())
        n_tok = float(mask.sum())
        correct = (logp.detach() > -0.6931).float()  # the target token has probability > 1/2
        sums.add_mean("sft/token_accuracy_p50", alg.masked_mean(correct, mask), n_tok)
    grad_norm, stepped = worker.optimizer_step()
    sums.add_max("sft/grad_norm", grad_norm)
    sums.add_sum("sft/skipped_steps", 0.0 if stepped else 1.0 / d)
    metrics = sums.reduce(worker.collective_device)
    metrics["sft/lr"] = lr
    metrics["sft/tokens_per_s"] = metrics["sft/tokens"] / max(time.perf_counter() - start, 1e-9)
    return metrics
