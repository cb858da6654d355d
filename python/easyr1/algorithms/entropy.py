"""Entropy and token log-probabilities from logits, chunked to bound memory (``worker.actor.entropy_chunk_size``).

Logits of a long response are huge (T × V, V ≈ 150k for Qwen). Both functions flatten the leading dims to rows of
V and process ``chunk_size`` rows at a time in float32 (or the logits' dtype if wider). When autograd is on, each
chunk is wrapped in activation checkpointing so its float32 softmax is not kept for the backward pass; the peak
extra memory is then one chunk's worth.

Entropy bonus: ``loss −= entropy_coeff · agg_loss(entropy_from_logits(logits), mask, mode)``
(``worker.actor.entropy_coeff``, 0 disables it — then compute the entropy under ``torch.no_grad()`` as a metric).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.checkpoint import checkpoint

DEFAULT_CHUNK_SIZE = 1024


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _entropy_rows(rows: torch.Tensor) -> torch.Tensor:
    z = rows.to(_work_dtype(rows.dtype))
    logz = torch.logsumexp(z, dim=-1)
    probs = torch.softmax(z, dim=-1)
    # A −inf logit (masked vocabulary entry) has probability 0 and must add 0, not 0·(−inf) = NaN (nor NaN grads).
    finite_z = torch.where(torch.isneginf(z), torch.zeros((), dtype=z.dtype, device=z.device), z)
    return logz - (probs * finite_z).sum(dim=-1)


def _chunked(fn: Callable[..., torch.Tensor], chunk_size: int, *tensors: torch.Tensor) -> torch.Tensor:
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    rows = tensors[0].shape[0]
    use_checkpoint = torch.is_grad_enabled() and tensors[0].requires_grad
    parts = []
    for start in range(0, rows, chunk_size):
        pieces = [t[start : start + chunk_size] for t in tensors]
        if use_checkpoint:
            parts.append(checkpoint(fn, *pieces, use_reentrant=False))
        else:
            parts.append(fn(*pieces))
    if not parts:  # no rows: still go through fn so the result stays attached to the autograd graph
        return fn(*tensors)
    return torch.cat(parts)


def entropy_from_logits(logits: torch.Tensor, chunk_size: int = DEFAULT_CHUNK_SIZE) -> torch.Tensor:
    """Per-position entropy ``H = logsumexp(z) − Σ softmax(z)·z`` of logits (..., V); returns (...) in float32
    (float64 for float64 logits). Differentiable; mask and aggregate the result with ``agg_loss``.
    """
    shape = logits.shape[:-1]
    flat = logits.reshape(-1, logits.shape[-1])
    return _chunked(_entropy_rows, chunk_size, flat).reshape(shape)


def _logprob_rows(rows: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    z = rows.to(_work_dtype(rows.dtype))
    picked = z.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(z, dim=-1)


def logprobs_from_logits(
    logits: torch.Tensor, labels: torch.Tensor, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> torch.Tensor:
    """Log-probability of ``labels`` (...) under ``logits`` (..., V): ``z[label] − logsumexp(z)``, chunked like
    :func:`entropy_from_logits`; returns (...) in float32 (float64 for float64 logits).
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} do not match")
    flat = logits.reshape(-1, logits.shape[-1])
    flat_labels = labels.reshape(-1).long()
    return _chunked(_logprob_rows, chunk_size, flat, flat_labels).reshape(labels.shape)
