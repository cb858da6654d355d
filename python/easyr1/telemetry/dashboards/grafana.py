"""Building blocks of Grafana dashboards (JSON model v1): selectors, targets, panels, layout, variables.

Every selector made by :func:`sel` filters on the ``namespace`` and ``job`` variables; ``window`` is the smoothing
window of the per-step counters (steps are minutes apart, so Grafana's ``$__rate_interval`` would often hold no
step).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..keys import JUDGE_SUCCESS_OUTCOMES

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
def per_step_ratio(part: str, whole: str) -> str:
    return f"sum by (job) (rate({part}[$window])) / sum by (job) (rate({whole}[$window]))"


def judge_failure_ratio() -> str:
    failed = f"sum by (job) (rate(easyr1_judge_requests_total{sel(no_match('outcome', OK))}[$window]))"
    total = f"sum by (job) (rate(easyr1_judge_requests_total{S}[$window]))"
    return f"({failed} or {total} * 0) / {total}"


def quantile(q: float, metric: str, by: str, *matchers: str) -> str:
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{sel(*matchers)}[$window])))"


def stage_share(stages: str) -> str:
    part = f"sum by (namespace, job) (rate(easyr1_stage_duration_seconds_sum{sel(match('stage', stages))}[$window]))"
    whole = f"sum by (namespace, job) (rate(easyr1_stage_duration_seconds_sum{sel(stage='step')}[$window]))"
    return f"{part} / on (namespace, job) {whole}"
