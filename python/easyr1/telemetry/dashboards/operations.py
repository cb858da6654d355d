"""The operations dashboards: judge, throughput and stage times, pools."""

from __future__ import annotations

from typing import Any

from ..keys import POOL_STAGES
from .grafana import (
    OK,
    S,
    dashboard,
    judge_failure_ratio,
    layout,
    match,
    no_match,
    quantile,
    sel,
    stage_share,
    stat,
    target,
    timeseries,
)


def judge() -> dict[str, Any]:
    requests = "easyr1_judge_requests_total"
    hits = f"sum by (job) (rate(easyr1_judge_cache_hits_total{S}[$window]))"
    misses = f"sum by (job) (rate(easyr1_judge_cache_misses_total{S}[$window]))"
    cost_rate = f"sum by (job) (rate(easyr1_judge_cost_usd_total{S}[$window])) * 3600"
    sections = [
        (
            "Now",
            [
                [
                    stat(
                        "Requests per second",
                        [target(f"sum by (job) (rate({requests}{S}[$window]))", "{{job}}")],
                        unit="reqps",
                    ),
                    stat(
                        "Failure ratio",
                        [target(judge_failure_ratio(), "{{job}}")],
                        unit="percentunit",
                        thresholds=[(0.05, "orange"), (0.2, "red")],
                    ),
                    stat("Cost per hour", [target(cost_rate, "{{job}}")], unit="currencyUSD"),
                    stat("Cache hit rate", [target(f"{hits} / ({hits} + {misses})", "{{job}}")], unit="percentunit"),
                    stat(
                        "Spend (time range)",
                        [target(f"sum by (job) (increase(easyr1_judge_cost_usd_total{S}[$__range]))", "{{job}}")],
                        unit="currencyUSD",
                    ),
                ]
            ],
        ),
        (
            "Latency and outcomes",
            [
                [
                    timeseries(
                        "Latency p50 / p95 (per judged sample)",
                        [
                            target(quantile(0.5, "easyr1_judge_latency_seconds", "job"), "{{job}} p50"),
                            target(quantile(0.95, "easyr1_judge_latency_seconds", "job"), "{{job}} p95"),
                            target(
                                f"max by (job) (easyr1_judge_latency_p95_seconds{S})", "{{job}} p95 (last step, client)"
                            ),
                        ],
                        unit="s",
                    ),
                    timeseries(
                        "Requests by outcome",
                        [target(f"sum by (job, outcome) (rate({requests}{S}[$window]))", "{{job}} {{outcome}}")],
                        unit="reqps",
                        stack=True,
                    ),
                    timeseries(
                        "Errors by reason",
                        [
                            target(
                                f"sum by (job, outcome) (rate({requests}{sel(no_match('outcome', OK))}[$window]))",
                                "{{job}} {{outcome}}",
                            )
                        ],
                        unit="reqps",
                        stack=True,
                    ),
                ],
                [
                    timeseries(
                        "Failure ratio",
                        [
                            target(judge_failure_ratio(), "{{job}}"),
                            target(
                                f"max by (job) (easyr1_alert_threshold{sel(alert='judge_failure_ratio')})",
                                "{{job}} alert threshold",
                            ),
                        ],
                        unit="percentunit",
                        min_zero=True,
                    ),
                    timeseries(
                        "Cache hit rate",
                        [target(f"{hits} / ({hits} + {misses})", "{{job}}")],
                        unit="percentunit",
                        min_zero=True,
                    ),
                ],
                [
                    timeseries(
                        "Retries by cause (HTTP status, timeout, connection)",
                        [
                            target(
                                f"sum by (job, reason) (rate(easyr1_judge_retries_total{S}[$window]))",
                                "{{job}} {{reason}}",
                            )
                        ],
                        unit="reqps",
                        stack=True,
                    ),
                    timeseries(
                        "Retries per request",
                        [
                            target(
                                f"(sum by (job) (rate(easyr1_judge_retries_total{S}[$window])) or "
                                f"sum by (job) (rate({requests}{S}[$window])) * 0) / "
                                f"sum by (job) (rate({requests}{S}[$window]))",
                                "{{job}}",
                            ),
                            target(
                                f"max by (job) (easyr1_alert_threshold{sel(alert='judge_retry_ratio')})",
                                "{{job}} alert threshold",
                            ),
                        ],
                        min_zero=True,
                    ),
                    timeseries(
                        "Waiting for the judge (outage backoff, share of wall time)",
                        [
                            target(
                                f"sum by (job) (rate(easyr1_judge_waiting_seconds_total{S}[$window]))",
                                "{{job}}",
                            )
                        ],
                        unit="percentunit",
                        min_zero=True,
                    ),
                ],
            ],
        ),
        (
            "Cost and tokens",
            [
                [
                    timeseries(
                        "Cost per hour",
                        [
                            target(cost_rate, "{{job}}"),
                            target(
                                f"max by (job) (easyr1_alert_threshold{sel(alert='judge_cost_usd_per_hour')}) < Inf",
                                "{{job}} budget",
                            ),
                        ],
                        unit="currencyUSD",
                        min_zero=True,
                    ),
                    timeseries(
                        "Tokens per second",
                        [
                            target(
                                f"sum by (job) (rate(easyr1_judge_prompt_tokens_total{S}[$window]))", "{{job}} prompt"
                            ),
                            target(
                                f"sum by (job) (rate(easyr1_judge_completion_tokens_total{S}[$window]))",
                                "{{job}} completion",
                            ),
                        ],
                        min_zero=True,
                    ),
                ]
            ],
        ),
    ]
    return dashboard(
        "easyr1-judge",
        "easyr1 / Judge",
        "Multimodal judge health: latency, outcomes and error reasons, cost, tokens and cache.",
        layout(sections),
    )


def throughput() -> dict[str, Any]:
    stage_sum = "easyr1_stage_duration_seconds_sum"
    stage_count = "easyr1_stage_duration_seconds_count"
    not_step = 'stage!="step"'
    sections = [
        (
            "Throughput",
            [
                [
                    stat(
                        "Tokens per second",
                        [target(f"avg by (job) (easyr1_throughput_tokens_per_second{S})", "{{job}}")],
                    ),
                    stat(
                        "Images per second",
                        [target(f"avg by (job) (easyr1_throughput_images_per_second{S})", "{{job}}")],
                        decimals=2,
                    ),
                    stat(
                        "Samples per second",
                        [target(f"avg by (job) (easyr1_throughput_samples_per_second{S})", "{{job}}")],
                        decimals=2,
                    ),
                    stat(
                        "Last step",
                        [target(f"max by (job) (easyr1_stage_last_duration_seconds{sel(stage='step')})", "{{job}}")],
                        unit="s",
                    ),
                ],
                [
                    timeseries(
                        "Rollout tokens per second",
                        [target(f"avg by (job) (easyr1_throughput_tokens_per_second{S})", "{{job}}")],
                    ),
                    timeseries(
                        "Edited images per second",
                        [target(f"avg by (job) (easyr1_throughput_images_per_second{S})", "{{job}}")],
                    ),
                    timeseries(
                        "Samples per second",
                        [target(f"avg by (job) (easyr1_throughput_samples_per_second{S})", "{{job}}")],
                    ),
                ],
            ],
        ),
        (
            "Stage times",
            [
                [
                    timeseries(
                        "Stage durations of the last step",
                        [
                            target(
                                f"max by (job, stage) (easyr1_stage_last_duration_seconds{sel(not_step)})",
                                "{{job}} {{stage}}",
                            )
                        ],
                        unit="s",
                        stack=True,
                        bars=True,
                    ),
                    timeseries(
                        "Share of step time by stage",
                        [
                            target(
                                f"sum by (namespace, job, stage) (rate({stage_sum}{sel(not_step)}[$window])) / on (namespace, job) "
                                f"group_left () sum by (namespace, job) (rate({stage_sum}{sel(stage='step')}[$window]))",
                                "{{job}} {{stage}}",
                            )
                        ],
                        unit="percentunit",
                        stack=True,
                    ),
                ],
                [
                    timeseries(
                        "Mean stage duration (window)",
                        [
                            target(
                                f"sum by (job, stage) (rate({stage_sum}{S}[$window])) / sum by (job, stage) (rate({stage_count}{S}[$window]))",
                                "{{job}} {{stage}}",
                            )
                        ],
                        unit="s",
                    ),
                    timeseries(
                        "p95 stage duration (window)",
                        [target(quantile(0.95, "easyr1_stage_duration_seconds", "job, stage"), "{{job}} {{stage}}")],
                        unit="s",
                    ),
                ],
            ],
        ),
    ]
    return dashboard(
        "easyr1-throughput",
        "easyr1 / Throughput and stage times",
        "Rollout tokens/s, edited images/s, samples/s and where each step spends its time.",
        layout(sections),
    )


def pools() -> dict[str, Any]:
    busy = [target(stage_share("|".join(stages)), f"{pool} {{{{job}}}}") for pool, stages in POOL_STAGES.items()]

    def per_worker(metric: str, pool: str) -> str:
        return (
            f"avg by (namespace, job) ({metric}{S}) / on (namespace, job) "
            f"max by (namespace, job) (easyr1_pool_workers{sel(pool=pool)})"
        )

    sections = [
        (
            "Size",
            [
                [
                    stat(
                        "Workers per pool", [target(f"max by (pool) (easyr1_pool_workers{S})", "{{pool}}")], decimals=0
                    ),
                    stat("GPUs per pool", [target(f"max by (pool) (easyr1_pool_gpus{S})", "{{pool}}")], decimals=0),
                ]
            ],
        ),
        (
            "Load",
            [
                [
                    timeseries(
                        "Busy ratio per pool (measured)",
                        [target(f"max by (job, pool) (easyr1_pool_busy_ratio{S})", "{{pool}} {{job}}")],
                        unit="percentunit",
                        min_zero=True,
                        description="Union of each pool's stage spans in the last step / the step's wall time "
                        "(trainer.pipeline overlaps stages, so the shares can add up to more than 1).",
                    ),
                    timeseries(
                        "Stage share per pool (sum of stage times / step)",
                        busy,
                        unit="percentunit",
                        min_zero=True,
                        description="actor: old/ref log-probs and update; rollout: generation; editor: re-edits. "
                        "Equal to the measured busy ratio for the staged pipeline only.",
                    ),
                    timeseries(
                        "Rollout tokens per second per engine",
                        [target(per_worker("easyr1_throughput_tokens_per_second", "rollout"), "{{job}}")],
                    ),
                    timeseries(
                        "Edited images per second per replica",
                        [target(per_worker("easyr1_throughput_images_per_second", "editor"), "{{job}}")],
                    ),
                ],
                [
                    timeseries(
                        "Editor latency p50 / p95 (per re-edit)",
                        [
                            target(quantile(0.5, "easyr1_edit_latency_seconds", "job"), "{{job}} p50"),
                            target(quantile(0.95, "easyr1_edit_latency_seconds", "job"), "{{job}} p95"),
                        ],
                        unit="s",
                    ),
                    timeseries(
                        "Weight sync and checkpoint time (last)",
                        [
                            target(
                                f"max by (job, stage) (easyr1_stage_last_duration_seconds{sel(match('stage', 'sync|checkpoint'))})",
                                "{{job}} {{stage}}",
                            )
                        ],
                        unit="s",
                    ),
                ],
            ],
        ),
        (
            "Pipeline (trainer.pipeline)",
            [
                [
                    timeseries(
                        "Step wall vs critical path",
                        [
                            target(
                                f"max by (job) (easyr1_stage_last_duration_seconds{sel(stage='step')})",
                                "{{job}} step wall",
                            ),
                            target(f"max by (job) (easyr1_step_critical_path_seconds{S})", "{{job}} critical path"),
                            target(f"max by (job) (easyr1_step_stage_overlap_seconds{S})", "{{job}} stage overlap"),
                        ],
                        unit="s",
                        description="Critical path: the chain of stage spans that ended the step. Overlap: stage time "
                        "that ran beside another stage (0 when staged).",
                    ),
                    timeseries(
                        "Policy staleness (off_policy_1)",
                        [
                            target(f"max by (job) (easyr1_policy_staleness_mean{S})", "{{job}} mean"),
                            target(f"max by (job) (easyr1_policy_staleness_max{S})", "{{job}} max"),
                        ],
                        min_zero=True,
                        description="Policy versions between the weights that generated a step's samples and the "
                        "weights they trained: 0 on-policy, 1 for off_policy_1 from step 2.",
                    ),
                ]
            ],
        ),
        (
            "Driver process",
            [
                [
                    timeseries(
                        "Driver resident memory",
                        [target(f"max by (job, instance) (process_resident_memory_bytes{S})", "{{job}} {{instance}}")],
                        unit="bytes",
                    ),
                    timeseries(
                        "Driver CPU (cores)",
                        [
                            target(
                                f"sum by (job, instance) (rate(process_cpu_seconds_total{S}[$__rate_interval]))",
                                "{{job}} {{instance}}",
                            )
                        ],
                        min_zero=True,
                    ),
                ]
            ],
        ),
    ]
    return dashboard(
        "easyr1-pools",
        "easyr1 / Pools",
        "The actor, rollout and editor pools: size, busy share of each step, per-worker throughput, editor latency.",
        layout(sections),
    )
