"""The training dashboards: overview (progress, reward, samples, policy) and reward by dimension."""

from __future__ import annotations

from typing import Any

from .grafana import (
    S,
    dashboard,
    layout,
    match,
    no_match,
    per_step_ratio,
    quantile,
    sel,
    stat,
    table,
    target,
    timeseries,
)


def overview() -> dict[str, Any]:
    reward = "easyr1_reward_mean"
    sections = [
        (
            "Now",
            [
                [
                    stat("Global step", [target(f"max by (job) (easyr1_global_step{S})", "{{job}}")], decimals=0),
                    stat(
                        "Time since last step",
                        [target(f"time() - max by (job) (easyr1_last_step_timestamp_seconds{S})", "{{job}}")],
                        unit="s",
                        thresholds=[(900, "orange"), (1800, "red")],
                        description="Wall-clock seconds since the driver last logged a step (alert: EasyR1NoStepCompleted).",
                    ),
                    stat(
                        "Combined reward (last step)",
                        [target(f"avg by (job) ({reward}{sel(dimension='overall')})", "{{job}}")],
                        decimals=2,
                    ),
                    stat(
                        "Valid samples (window)",
                        [
                            target(
                                per_step_ratio(f"easyr1_samples_valid_total{S}", f"easyr1_samples_total{S}"), "{{job}}"
                            )
                        ],
                        unit="percentunit",
                    ),
                    stat(
                        "Steps per hour",
                        [target(f"sum by (job) (rate(easyr1_steps_total{S}[$window])) * 3600", "{{job}}")],
                        decimals=1,
                    ),
                    stat(
                        "Judge spend (time range)",
                        [target(f"sum by (job) (increase(easyr1_judge_cost_usd_total{S}[$__range]))", "{{job}}")],
                        unit="currencyUSD",
                    ),
                ]
            ],
        ),
        (
            "Reward and samples",
            [
                [
                    timeseries(
                        "Reward: combined and format (step mean)",
                        [
                            target(
                                f"avg by (job, dimension) ({reward}{sel(match('dimension', 'overall|format'))})",
                                "{{job}} {{dimension}}",
                            )
                        ],
                        description="Combined reward on 0-10, format score on 0-5.",
                    ),
                    timeseries(
                        "Samples per window: valid and masked by reason",
                        [
                            target(f"sum by (job) (increase(easyr1_samples_valid_total{S}[$window]))", "{{job}} valid"),
                            target(
                                f"sum by (job, reason) (increase(easyr1_samples_masked_total{S}[$window]))",
                                "{{job}} masked: {{reason}}",
                            ),
                        ],
                        min_zero=True,
                    ),
                    timeseries(
                        "Masked fraction",
                        [
                            target(
                                per_step_ratio(f"easyr1_samples_masked_total{S}", f"easyr1_samples_total{S}"),
                                "{{job}}",
                            ),
                            target(
                                f"max by (job) (easyr1_alert_threshold{sel(alert='masked_fraction')})",
                                "{{job}} alert threshold",
                            ),
                        ],
                        unit="percentunit",
                        min_zero=True,
                    ),
                ]
            ],
        ),
        (
            "Policy",
            [
                [
                    timeseries("KL to reference", [target(f"avg by (job) (easyr1_actor_kl{S})", "{{job}}")]),
                    timeseries("Entropy", [target(f"avg by (job) (easyr1_actor_entropy{S})", "{{job}}")]),
                    timeseries("Gradient norm", [target(f"avg by (job) (easyr1_actor_grad_norm{S})", "{{job}}")]),
                ],
                [
                    timeseries("Policy loss", [target(f"avg by (job) (easyr1_actor_pg_loss{S})", "{{job}}")]),
                    timeseries(
                        "PPO clip ratio",
                        [target(f"avg by (job) (easyr1_actor_pg_clip_ratio{S})", "{{job}}")],
                        unit="percentunit",
                    ),
                    timeseries(
                        "Learning rate",
                        [target(f"avg by (job) (easyr1_actor_learning_rate{S})", "{{job}}")],
                        unit="sci",
                    ),
                ],
            ],
        ),
        (
            "Run",
            [
                [
                    timeseries(
                        "Step duration",
                        [target(f"max by (job) (easyr1_stage_last_duration_seconds{sel(stage='step')})", "{{job}}")],
                        unit="s",
                    ),
                    table(
                        "Run info",
                        [
                            target(
                                "max by (namespace, job, model, strategy, adv_estimator, rollout_engine, editor_backend, "
                                f"judge_backend, judge_model, experiment, revision, version) (easyr1_run_info{S})",
                                table=True,
                            )
                        ],
                    ),
                ]
            ],
        ),
    ]
    return dashboard(
        "easyr1-overview",
        "easyr1 / Training overview",
        "Progress, reward, sample health and policy statistics of easyr1 GRPO runs.",
        layout(sections),
    )


def reward_by_dimension() -> dict[str, Any]:
    judge_dims = no_match("dimension", "overall|format")
    sections = [
        (
            "Step means",
            [
                [
                    stat(
                        "Last step mean by dimension",
                        [target(f"avg by (dimension) (easyr1_reward_mean{S})", "{{dimension}}")],
                        decimals=2,
                    )
                ],
                [
                    timeseries(
                        "Judge dimensions (step mean, 0-10)",
                        [
                            target(
                                f"avg by (job, dimension) (easyr1_reward_mean{sel(judge_dims)})",
                                "{{job}} {{dimension}}",
                            )
                        ],
                    ),
                    timeseries(
                        "Combined reward and format (step mean)",
                        [
                            target(
                                f"avg by (job, dimension) (easyr1_reward_mean{sel(match('dimension', 'overall|format'))})",
                                "{{job}} {{dimension}}",
                            )
                        ],
                    ),
                ],
            ],
        ),
        (
            "Per-sample distribution (valid samples)",
            [
                [
                    timeseries(
                        "Combined reward quantiles",
                        [
                            target(
                                quantile(q, "easyr1_sample_reward", "job", 'dimension="overall"'),
                                f"{{{{job}}}} p{int(q * 100)}",
                            )
                            for q in (0.1, 0.5, 0.9)
                        ],
                    ),
                    timeseries(
                        "Median by dimension",
                        [target(quantile(0.5, "easyr1_sample_reward", "job, dimension"), "{{job}} {{dimension}}")],
                    ),
                    timeseries(
                        "Low tail (p10) by dimension",
                        [target(quantile(0.1, "easyr1_sample_reward", "job, dimension"), "{{job}} {{dimension}}")],
                        description="The reward histogram has negative buckets (improvement rewards), so it has no _sum.",
                    ),
                ],
                [
                    timeseries(
                        "Scored samples per window by dimension",
                        [
                            target(
                                f"sum by (job, dimension) (increase(easyr1_sample_reward_count{S}[$window]))",
                                "{{job}} {{dimension}}",
                            )
                        ],
                        min_zero=True,
                    )
                ],
            ],
        ),
    ]
    return dashboard(
        "easyr1-reward",
        "easyr1 / Reward by dimension",
        "The five judge dimensions, the format score and the combined reward: step means and per-sample quantiles.",
        layout(sections),
    )
