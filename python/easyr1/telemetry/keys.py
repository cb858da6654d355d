"""The metric-key convention of the ``metrics`` dicts the driver logs each step, and their Prometheus series.

The driver produces flat ``{key: number}`` dicts (also written to ``metrics.jsonl``). Keys of the shapes below are
mapped to ``easyr1_*`` Prometheus series; any other key still reaches the file, wandb and TensorBoard loggers.
Counts (``samples/*``, ``judge/requests/*``, tokens, cost, cache hits/misses) are *per-step amounts*, never running
totals: the exporter adds them to its counters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from easyr1.config import DIMENSIONS

STAGES: tuple[str, ...] = (
    "rollout",
    "edit",
    "judge",
    "reward",
    "old_logprob",
    "ref_logprob",
    "update",
    "sync",
    "checkpoint",
    "step",
)
"""Stages timed by the driver (``timing/<stage>_s``); ``step`` is the whole step."""

REWARD_KEYS: tuple[str, ...] = ("overall", *DIMENSIONS, "format")
"""Values of the ``dimension`` label of the reward series (``reward/mean`` is ``overall``)."""

JUDGE_SUCCESS_OUTCOMES: tuple[str, ...] = ("ok", "cached")
"""``judge/requests/<outcome>`` outcomes that are not failures; every other outcome counts as a failed request."""

POOL_STAGES: dict[str, tuple[str, ...]] = {
    "actor": ("old_logprob", "ref_logprob", "update"),
    "rollout": ("rollout",),
    "editor": ("edit",),
}
"""Which stages keep which Ray pool busy (the pools dashboard's busy ratio when a run reports no
``pipeline/busy/<pool>``)."""

BUSY_PREFIX = "pipeline/busy/"
"""Step-row keys ``pipeline/busy/<pool>``: the pool's measured busy share of the step (from the stage spans)."""

MAX_LABEL_VALUES = 32
"""Distinct values a free-form label (mask reason, judge outcome) may take; later ones are folded into ``other``."""

_LABEL_VALUE_RE = re.compile(r"[^a-z0-9_]+")


def label_value(raw: str) -> str:
    """A free-form reason/outcome as a tidy label value: lower case, ``[a-z0-9_]``, at most 48 characters."""
    value = _LABEL_VALUE_RE.sub("_", raw.strip().lower()).strip("_")
    return value[:48] or "unknown"


@dataclass(frozen=True)
class SeriesSpec:
    """How one metric key maps to a Prometheus series (for the exporter and the docs table)."""

    key: str
    """Metric key pattern (``<x>`` marks a variable part)."""
    series: str
    """Prometheus series with labels."""
    kind: str
    """``gauge`` (set to the value), ``counter`` (value added) or ``gauge+histogram``."""
    unit: str
    """What the number measures."""


SERIES: tuple[SeriesSpec, ...] = (
    SeriesSpec("step", "easyr1_global_step", "gauge", "step index"),
    SeriesSpec("step", "easyr1_steps_total", "counter (+1 per log_step)", "steps"),
    SeriesSpec("step", "easyr1_last_step_timestamp_seconds", "gauge (wall clock of log_step)", "seconds since epoch"),
    SeriesSpec("reward/mean", 'easyr1_reward_mean{dimension="overall"}', "gauge", "points (0-10)"),
    SeriesSpec("reward/<dimension>", 'easyr1_reward_mean{dimension="<dimension>"}', "gauge", "points (0-10)"),
    SeriesSpec("reward/format", 'easyr1_reward_mean{dimension="format"}', "gauge", "points (0-5)"),
    SeriesSpec("samples/total", "easyr1_samples_total", "counter", "samples"),
    SeriesSpec("samples/valid", "easyr1_samples_valid_total", "counter", "samples"),
    SeriesSpec("samples/masked/<reason>", 'easyr1_samples_masked_total{reason="<reason>"}', "counter", "samples"),
    SeriesSpec(
        "timing/<stage>_s",
        'easyr1_stage_duration_seconds{stage="<stage>"} and easyr1_stage_last_duration_seconds{stage="<stage>"}',
        "histogram + gauge",
        "seconds",
    ),
    SeriesSpec("throughput/tokens_per_s", "easyr1_throughput_tokens_per_second", "gauge", "tokens/s"),
    SeriesSpec("throughput/images_per_s", "easyr1_throughput_images_per_second", "gauge", "images/s"),
    SeriesSpec("throughput/samples_per_s", "easyr1_throughput_samples_per_second", "gauge", "samples/s"),
    SeriesSpec("judge/requests/<outcome>", 'easyr1_judge_requests_total{outcome="<outcome>"}', "counter", "requests"),
    SeriesSpec("judge/retries/<cause>", 'easyr1_judge_retries_total{reason="<cause>"}', "counter", "retries"),
    SeriesSpec("judge/latency_p50_s", "easyr1_judge_latency_p50_seconds", "gauge", "seconds"),
    SeriesSpec("judge/latency_p95_s", "easyr1_judge_latency_p95_seconds", "gauge", "seconds"),
    SeriesSpec("judge/prompt_tokens", "easyr1_judge_prompt_tokens_total", "counter", "tokens"),
    SeriesSpec("judge/completion_tokens", "easyr1_judge_completion_tokens_total", "counter", "tokens"),
    SeriesSpec("judge/cost_usd", "easyr1_judge_cost_usd_total", "counter", "US dollars"),
    SeriesSpec("judge/cache_hits", "easyr1_judge_cache_hits_total", "counter", "lookups"),
    SeriesSpec("judge/cache_misses", "easyr1_judge_cache_misses_total", "counter", "lookups"),
    SeriesSpec("judge/waiting_s", "easyr1_judge_waiting_seconds_total", "counter", "seconds"),
    SeriesSpec("pipeline/busy/<pool>", 'easyr1_pool_busy_ratio{pool="<pool>"}', "gauge", "share of the step's wall"),
    SeriesSpec("pipeline/staleness_mean", "easyr1_policy_staleness_mean", "gauge", "policy versions"),
    SeriesSpec("pipeline/staleness_max", "easyr1_policy_staleness_max", "gauge", "policy versions"),
    SeriesSpec("pipeline/critical_path_s", "easyr1_step_critical_path_seconds", "gauge", "seconds"),
    SeriesSpec("pipeline/overlap_s", "easyr1_step_stage_overlap_seconds", "gauge", "seconds"),
    SeriesSpec("actor/kl", "easyr1_actor_kl", "gauge", "nats per token"),
    SeriesSpec("actor/entropy", "easyr1_actor_entropy", "gauge", "nats per token"),
    SeriesSpec("actor/grad_norm", "easyr1_actor_grad_norm", "gauge", "L2 norm"),
    SeriesSpec("actor/lr", "easyr1_actor_learning_rate", "gauge", "learning rate"),
    SeriesSpec("actor/pg_loss", "easyr1_actor_pg_loss", "gauge", "loss"),
    SeriesSpec("actor/pg_clipfrac", "easyr1_actor_pg_clip_ratio", "gauge", "fraction of tokens"),
    SeriesSpec(
        'observe_rewards / observe("reward", dimension=...)',
        'easyr1_sample_reward{dimension="<dimension>"}',
        "histogram",
        "points",
    ),
    SeriesSpec(
        'observe_judge_latency / observe("judge_latency")', "easyr1_judge_latency_seconds", "histogram", "seconds"
    ),
    SeriesSpec('observe_edit_latency / observe("edit_latency")', "easyr1_edit_latency_seconds", "histogram", "seconds"),
    SeriesSpec(
        "(config, constant)",
        "easyr1_run_info{model, strategy, adv_estimator, rollout_engine, editor_backend, judge_backend, judge_model, "
        "project, experiment, revision, version}",
        "gauge (always 1)",
        "-",
    ),
    SeriesSpec("(config, constant)", "easyr1_pool_workers{pool} (actor, rollout, editor)", "gauge", "Ray actors"),
    SeriesSpec("(config, constant)", "easyr1_pool_gpus{pool} (actor, rollout, editor)", "gauge", "GPUs"),
    SeriesSpec(
        "(config, constant)",
        'easyr1_alert_threshold{alert="<telemetry.alerts field>" or "judge_retry_ratio" (judge.alert_retry_ratio)}',
        "gauge",
        "varies",
    ),
)
"""Every easyr1_* series and where it comes from (rendered into docs/observability.md)."""

GAUGE_KEYS: dict[str, tuple[str, str]] = {
    "step": ("easyr1_global_step", "Global step of the last logged step."),
    "throughput/tokens_per_s": (
        "easyr1_throughput_tokens_per_second",
        "Generated tokens per second of rollout time in the last step.",
    ),
    "throughput/images_per_s": (
        "easyr1_throughput_images_per_second",
        "Edited images per second of editing time in the last step.",
    ),
    "throughput/samples_per_s": (
        "easyr1_throughput_samples_per_second",
        "Samples per second of wall-clock step time in the last step.",
    ),
    "judge/latency_p50_s": ("easyr1_judge_latency_p50_seconds", "Median judge latency in the last step."),
    "judge/latency_p95_s": ("easyr1_judge_latency_p95_seconds", "95th percentile judge latency in the last step."),
    "pipeline/staleness_mean": (
        "easyr1_policy_staleness_mean",
        "Mean policy versions between the weights that generated the last update's samples and the updated weights.",
    ),
    "pipeline/staleness_max": ("easyr1_policy_staleness_max", "Largest staleness among the last update's samples."),
    "pipeline/critical_path_s": (
        "easyr1_step_critical_path_seconds",
        "Length of the chain of stage spans that ended the last step (what bounds its wall time).",
    ),
    "pipeline/overlap_s": (
        "easyr1_step_stage_overlap_seconds",
        "Seconds of stage time that ran beside another stage in the last step (0 for the staged pipeline).",
    ),
    "actor/kl": ("easyr1_actor_kl", "KL divergence to the reference policy (per token) in the last update."),
    "actor/entropy": ("easyr1_actor_entropy", "Policy entropy (per token) in the last update."),
    "actor/grad_norm": ("easyr1_actor_grad_norm", "Gradient norm before clipping in the last update."),
    "actor/lr": ("easyr1_actor_learning_rate", "Learning rate of the last update."),
    "actor/pg_loss": ("easyr1_actor_pg_loss", "Policy-gradient loss of the last update."),
    "actor/pg_clipfrac": ("easyr1_actor_pg_clip_ratio", "Fraction of tokens clipped by the PPO ratio clip."),
}
"""Last-value gauge keys → (series name, help). A gauge appears once its key was first logged."""

COUNTER_KEYS: dict[str, str] = {
    "samples/total": "samples_total",
    "samples/valid": "samples_valid",
    "judge/prompt_tokens": "judge_prompt_tokens",
    "judge/completion_tokens": "judge_completion_tokens",
    "judge/cost_usd": "judge_cost",
    "judge/cache_hits": "judge_cache_hits",
    "judge/cache_misses": "judge_cache_misses",
    "judge/waiting_s": "judge_waiting",
}
"""Per-step amount keys → exporter counter attribute names."""


def reward_key(dimension: str) -> str:
    """The metrics-dict key of a reward dimension (``overall`` → ``reward/mean``)."""
    return "reward/mean" if dimension == "overall" else f"reward/{dimension}"


def timing_key(stage: str) -> str:
    """The metrics-dict key of a stage duration."""
    return f"timing/{stage}_s"
