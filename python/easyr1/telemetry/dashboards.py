"""The Grafana dashboards (JSON model v1) of the exporter's series, built in code and written to
``helm/files/dashboards/`` (the Helm chart ships them as ConfigMaps labelled ``grafana_dashboard: "1"``).

``python -m easyr1.telemetry.dashboards [--out helm/files/dashboards] [--check]`` rewrites (or checks) the files.
Every panel filters on the ``namespace`` and ``job`` variables; ``window`` is the smoothing window of the
per-step counters (steps are minutes apart, so Grafana's ``$__rate_interval`` would often hold no step).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .keys import JUDGE_SUCCESS_OUTCOMES, POOL_STAGES

logger = logging.getLogger(__name__)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39
OK = "|".join(JUDGE_SUCCESS_OUTCOMES)
WINDOWS = ["5m", "15m", "30m", "1h", "3h", "6h"]
DEFAULT_WINDOW = "15m"


def sel(*matchers: str, **equal: str) -> str:
    """A selector with the dashboard's namespace/job filters plus raw ``matchers`` and ``label="value"`` pairs."""
    pairs = [f'{label}="{value}"' for label, value in equal.items()]
    return "{" + ", ".join(['namespace=~"$namespace"', 'job=~"$job"', *matchers, *pairs]) + "}"


def match(label: str, pattern: str) -> str:
    """``label=~"pattern"``."""
    return f'{label}=~"{pattern}"'


def no_match(label: str, pattern: str) -> str:
    """``label!~"pattern"``."""
    return f'{label}!~"{pattern}"'


S = sel()


def target(expr: str, legend: str = "", *, instant: bool = False, table: bool = False) -> dict[str, Any]:
    t: dict[str, Any] = {"datasource": DATASOURCE, "editorMode": "code", "expr": expr, "legendFormat": legend}
    if instant or table:
        t["instant"] = True
        t["range"] = False
    if table:
        t["format"] = "table"
    return t


def timeseries(
    title: str,
    targets: Sequence[dict[str, Any]],
    *,
    unit: str = "short",
    description: str = "",
    stack: bool = False,
    bars: bool = False,
    min_zero: bool = False,
) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "unit": unit,
        "custom": {
            "drawStyle": "bars" if bars else "line",
            "lineInterpolation": "linear",
            "lineWidth": 1,
            "fillOpacity": 60 if bars else 10,
            "showPoints": "auto",
            "pointSize": 4,
            "spanNulls": True,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        },
    }
    if min_zero:
        defaults["min"] = 0
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": list(targets),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(
    title: str,
    targets: Sequence[dict[str, Any]],
    *,
    unit: str = "short",
    description: str = "",
    decimals: int | None = None,
    thresholds: Sequence[tuple[float, str]] = (),
) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "unit": unit,
        "color": {"mode": "thresholds" if thresholds else "fixed", "fixedColor": "blue"},
        "thresholds": {
            "mode": "absolute",
            "steps": [{"value": None, "color": "green"}, *({"value": v, "color": c} for v, c in thresholds)],
        },
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": list(targets),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "graphMode": "area",
            "colorMode": "value",
            "justifyMode": "auto",
            "textMode": "auto",
            "wideLayout": True,
            "showPercentChange": False,
            "percentChangeColorMode": "standard",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        },
    }


def table(title: str, targets: Sequence[dict[str, Any]], *, description: str = "") -> dict[str, Any]:
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": list(targets),
        "fieldConfig": {"defaults": {"custom": {"align": "auto", "inspect": False}}, "overrides": []},
        "options": {"frameIndex": 0, "showHeader": True, "cellHeight": "sm"},
        "transformations": [
            {"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True, "__name__": True}}}
        ],
    }


def row(title: str) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def layout(sections: Sequence[tuple[str, Sequence[Sequence[dict[str, Any]]]]]) -> list[dict[str, Any]]:
    """Place panels: each section is a row header followed by lines of panels sharing the width equally."""
    panels: list[dict[str, Any]] = []
    y = 0
    next_id = 1
    for title, lines in sections:
        header = row(title)
        header["id"] = next_id
        header["gridPos"] = {"h": 1, "w": 24, "x": 0, "y": y}
        next_id += 1
        y += 1
        panels.append(header)
        for line in lines:
            width = 24 // len(line)
            height = 4 if all(p["type"] == "stat" for p in line) else 8
            for i, panel in enumerate(line):
                panel["id"] = next_id
                next_id += 1
                panel["gridPos"] = {"h": height, "w": width, "x": i * width, "y": y}
                panels.append(panel)
            y += height
    return panels


def variables() -> list[dict[str, Any]]:
    all_option = {"selected": True, "text": "All", "value": "$__all"}
    return [
        {
            "type": "datasource",
            "name": "datasource",
            "label": "Data source",
            "query": "prometheus",
            "refresh": 1,
            "includeAll": False,
            "multi": False,
        },
        {
            "type": "query",
            "name": "namespace",
            "label": "Namespace",
            "datasource": DATASOURCE,
            "query": "label_values(easyr1_run_info, namespace)",
            "refresh": 2,
            "sort": 1,
            "includeAll": True,
            "allValue": ".*",
            "multi": True,
            "current": all_option,
        },
        {
            "type": "query",
            "name": "job",
            "label": "Job",
            "datasource": DATASOURCE,
            "query": 'label_values(easyr1_run_info{namespace=~"$namespace"}, job)',
            "refresh": 2,
            "sort": 1,
            "includeAll": True,
            "allValue": ".*",
            "multi": True,
            "current": all_option,
        },
        {
            "type": "interval",
            "name": "window",
            "label": "Window",
            "description": "Smoothing window of rates and quantiles over per-step counters.",
            "query": ",".join(WINDOWS),
            "current": {"selected": True, "text": DEFAULT_WINDOW, "value": DEFAULT_WINDOW},
            "options": [{"selected": w == DEFAULT_WINDOW, "text": w, "value": w} for w in WINDOWS],
            "auto": False,
            "refresh": 2,
        },
    ]


def dashboard(uid: str, title: str, description: str, panels: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": None,
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["easyr1"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "links": [
            {
                "title": "easyr1 dashboards",
                "type": "dashboards",
                "icon": "external link",
                "tooltip": "",
                "tags": ["easyr1"],
                "asDropdown": True,
                "targetBlank": False,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {"list": variables()},
        "panels": panels,
    }


# -- shared expressions ------------------------------------------------------------------------------------------
def _per_step_ratio(part: str, whole: str) -> str:
    return f"sum by (job) (rate({part}[$window])) / sum by (job) (rate({whole}[$window]))"


def _judge_failure_ratio() -> str:
    failed = f"sum by (job) (rate(easyr1_judge_requests_total{sel(no_match('outcome', OK))}[$window]))"
    total = f"sum by (job) (rate(easyr1_judge_requests_total{S}[$window]))"
    return f"({failed} or {total} * 0) / {total}"


def _quantile(q: float, metric: str, by: str, *matchers: str) -> str:
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{sel(*matchers)}[$window])))"


def _stage_share(stages: str) -> str:
    part = f"sum by (namespace, job) (rate(easyr1_stage_duration_seconds_sum{sel(match('stage', stages))}[$window]))"
    whole = f"sum by (namespace, job) (rate(easyr1_stage_duration_seconds_sum{sel(stage='step')}[$window]))"
    return f"{part} / on (namespace, job) {whole}"


# -- the five dashboards ---------------------------------------------------------------------------------------------
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
                                _per_step_ratio(f"easyr1_samples_valid_total{S}", f"easyr1_samples_total{S}"), "{{job}}"
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
                                _per_step_ratio(f"easyr1_samples_masked_total{S}", f"easyr1_samples_total{S}"),
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
                                _quantile(q, "easyr1_sample_reward", "job", 'dimension="overall"'),
                                f"{{{{job}}}} p{int(q * 100)}",
                            )
                            for q in (0.1, 0.5, 0.9)
                        ],
                    ),
                    timeseries(
                        "Median by dimension",
                        [target(_quantile(0.5, "easyr1_sample_reward", "job, dimension"), "{{job}} {{dimension}}")],
                    ),
                    timeseries(
                        "Low tail (p10) by dimension",
                        [target(_quantile(0.1, "easyr1_sample_reward", "job, dimension"), "{{job}} {{dimension}}")],
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
                        [target(_judge_failure_ratio(), "{{job}}")],
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
                            target(_quantile(0.5, "easyr1_judge_latency_seconds", "job"), "{{job}} p50"),
                            target(_quantile(0.95, "easyr1_judge_latency_seconds", "job"), "{{job}} p95"),
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
                            target(_judge_failure_ratio(), "{{job}}"),
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
                        [target(_quantile(0.95, "easyr1_stage_duration_seconds", "job, stage"), "{{job}} {{stage}}")],
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
    busy = [target(_stage_share("|".join(stages)), f"{pool} {{{{job}}}}") for pool, stages in POOL_STAGES.items()]

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
                        "Busy ratio per pool (share of step time)",
                        busy,
                        unit="percentunit",
                        min_zero=True,
                        description="actor: old/ref log-probs and update; rollout: generation; editor: re-edits.",
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
                            target(_quantile(0.5, "easyr1_edit_latency_seconds", "job"), "{{job}} p50"),
                            target(_quantile(0.95, "easyr1_edit_latency_seconds", "job"), "{{job}} p95"),
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


BUILDERS = {
    "easyr1-overview": overview,
    "easyr1-reward": reward_by_dimension,
    "easyr1-judge": judge,
    "easyr1-throughput": throughput,
    "easyr1-pools": pools,
}


def build_dashboards() -> dict[str, dict[str, Any]]:
    """All dashboards by file stem (``<stem>.json``)."""
    return {name: build() for name, build in BUILDERS.items()}


def render(model: dict[str, Any]) -> str:
    """The file text of a dashboard (stable formatting, so regenerating gives the same bytes)."""
    return json.dumps(model, indent=2, ensure_ascii=False) + "\n"


def panel_queries(model: dict[str, Any]) -> list[tuple[str, str]]:
    """``(panel title, expr)`` of every target of every panel (rows included)."""
    out: list[tuple[str, str]] = []
    for panel in model["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for t in inner.get("targets", []):
                out.append((inner.get("title", ""), t["expr"]))
    return out


def write_dashboards(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in build_dashboards().items():
        path = out_dir / f"{name}.json"
        path.write_text(render(model))
        written.append(path)
    return written


def stale_dashboards(out_dir: Path) -> list[str]:
    """File names under ``out_dir`` that are missing or differ from the builder's output."""
    return [
        f"{name}.json"
        for name, model in build_dashboards().items()
        if not (out_dir / f"{name}.json").is_file() or (out_dir / f"{name}.json").read_text() != render(model)
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("helm/files/dashboards"), help="output folder")
    parser.add_argument("--check", action="store_true", help="only report files that differ (exit 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.check:
        stale = stale_dashboards(args.out)
        for name in stale:
            logger.error("%s is out of date; run python -m easyr1.telemetry.dashboards", args.out / name)
        return 1 if stale else 0
    for path in write_dashboards(args.out):
        logger.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
