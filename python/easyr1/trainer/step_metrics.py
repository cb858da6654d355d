"""Every logged step row is assembled here: the training row and the validation row, from a
:class:`~easyr1.trainer.step_batch.StepBatch`, the stage counters, timings and pool metrics.

Both rows obey one rule (:func:`check_accounting`): ``samples/valid + Σ samples/masked/<reason> = samples/total``.
A mean without samples is NaN (absent), never 0.0.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Mapping

import torch

from easyr1.config import DIMENSIONS

from .step_batch import StepBatch


def sample_digest(ids: list[str]) -> str:
    """A short hash of the step's sample ids, in order (compares resumed and uninterrupted runs)."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


class AccountingError(AssertionError):
    """A logged row whose sample counts do not add up (a bug in the driver, never a data problem)."""


def reward_means(
    rewards: torch.Tensor, counted: torch.Tensor, dims: dict[str, torch.Tensor], fmt: torch.Tensor, prefix: str = ""
) -> dict[str, float]:
    """The reward means of a row: ``reward/mean`` over the samples counted in ``samples/valid`` (``counted``),
    ``reward/<dimension>`` over those of them the judge scored, ``reward/format`` over every sample.

    A mean without samples is absent: NaN (``null`` in metrics.jsonl, no Prometheus sample), with its count next to
    it (``reward/count``, ``reward/judged_count``) — never 0.0, which would read as a measurement.
    """
    metrics: dict[str, float] = {}
    chosen = rewards[counted]
    metrics[f"{prefix}reward/mean"] = float(chosen.mean()) if chosen.numel() else math.nan
    metrics[f"{prefix}reward/count"] = int(chosen.numel())
    judged = counted.clone()
    for d in DIMENSIONS:
        judged &= torch.isfinite(dims[d])
    for d in DIMENSIONS:
        values = dims[d][judged]
        metrics[f"{prefix}reward/{d}"] = float(values.mean()) if values.numel() else math.nan
    metrics[f"{prefix}reward/judged_count"] = int(judged.sum())
    metrics[f"{prefix}reward/format"] = float(fmt.double().mean()) if fmt.numel() else math.nan
    return metrics


def check_accounting(row: dict, prefix: str = "") -> None:
    """The one rule of every logged step row (training, validation, the row logged before a stop):
    ``samples/valid + Σ samples/masked/<reason> = samples/total`` with no negative count, ``data/digest`` present,
    and ``reward/mean`` absent (NaN) exactly when ``samples/valid`` is 0, with ``reward/count = samples/valid``."""
    p = prefix
    missing = [
        k for k in (f"{p}samples/total", f"{p}samples/valid", f"{p}data/digest", f"{p}reward/mean") if k not in row
    ]
    if missing:
        raise AccountingError(f"row lacks {missing}")
    masked = {k: v for k, v in row.items() if k.startswith(f"{p}samples/masked/")}
    if any(v < 0 for v in masked.values()) or row[f"{p}samples/valid"] < 0:
        raise AccountingError(f"negative sample count in {masked}")
    total, valid = row[f"{p}samples/total"], row[f"{p}samples/valid"]
    if valid + sum(masked.values()) != total:
        raise AccountingError(f"sample accounting broken: valid {valid} + masked {masked} != total {total}")
    if row.get(f"{p}reward/count") != valid:
        raise AccountingError(f"reward/count {row.get(f'{p}reward/count')} != samples/valid {valid}")
    if (valid == 0) != math.isnan(row[f"{p}reward/mean"]):
        raise AccountingError(f"reward/mean {row[f'{p}reward/mean']} with {valid} valid samples")


def sample_metrics(batch: StepBatch, counted: torch.Tensor, masked: Mapping[str, int], prefix: str = "") -> dict:
    """Reward means over the ``counted`` samples and the sample accounting (total, valid, masked by reason)."""
    row: dict[str, float] = reward_means(batch.rewards, counted, batch.dimension_scores, batch.format_scores, prefix)
    row[f"{prefix}samples/total"] = len(batch)
    row[f"{prefix}samples/valid"] = int(counted.sum())
    for reason, count in masked.items():
        row[f"{prefix}samples/masked/{reason}"] = count
    return row


def training_row(
    step: int,
    digest: str,
    batch: StepBatch,
    counted: torch.Tensor,
    masked: Mapping[str, int],
    counts: Counter,
    *,
    filter_counts: Mapping[str, int],
    loader_metrics: Mapping[str, float],
    pool_metrics: Mapping[str, float],
    actor_metrics: Mapping[str, float],
    timings: Mapping[str, float],
    pipeline_metrics: Mapping[str, float] | None = None,
) -> dict:
    """The row ``easyr1 train`` logs for one step (checked by :func:`check_accounting`); ``pipeline_metrics``: the
    step's ``pipeline/*`` keys (stage overlap, pool busy shares, staleness; :mod:`easyr1.trainer.stage_spans`)."""
    row: dict = {"step": step, "data/digest": digest}
    row.update(sample_metrics(batch, counted, masked))
    row["samples/no_re_edit"] = counts["no_re_edit"]
    row["samples/edit_failed"] = counts["edit_failed"]
    row["samples/judge_failed"] = counts["judge_failed"]
    row.update(filter_counts)
    row.update(loader_metrics)
    row.update(pool_metrics)
    row.update(pipeline_metrics or {})
    tokens = batch.response_tokens()
    row["response/length_mean"] = tokens / max(len(batch), 1)
    for key, value in actor_metrics.items():
        row[key if "/" in key else f"actor/{key}"] = float(value)
    for name, seconds in timings.items():
        row[f"timing/{name}_s"] = seconds
    row["throughput/tokens_per_s"] = tokens / max(timings.get("rollout", 1e-9), 1e-9)
    row["throughput/images_per_s"] = counts["edits"] / max(timings.get("edit", 1e-9), 1e-9) if counts["edits"] else 0.0
    row["throughput/samples_per_s"] = len(batch) / timings["step"]
    check_accounting(row)
    return row


def validation_row(
    digest: str, batch: StepBatch, timings: Mapping[str, float], pool_metrics: Mapping[str, float]
) -> dict:
    """The ``val/`` row: every validation sample, counted when it was scored (checked by :func:`check_accounting`)."""
    row: dict = {"val/data/digest": digest}
    row.update(sample_metrics(batch, batch.valid, batch.masked_by_reason(), prefix="val/"))
    check_accounting(row, prefix="val/")
    for name, seconds in timings.items():
        row[f"val/timing/{name}_s"] = seconds
    row.update({f"val/{k}": v for k, v in pool_metrics.items()})
    return row
