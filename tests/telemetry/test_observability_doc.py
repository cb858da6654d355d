"""docs/observability.md lists exactly what is shipped: every series, panel and alert."""

from __future__ import annotations

import re

import yaml
from telemetry_testkit import REPO_ROOT, RULES_FILE

from easyr1.telemetry import SERIES
from easyr1.telemetry.dashboards import build_dashboards

DOC = REPO_ROOT / "docs" / "observability.md"


def test_doc_lists_every_series_panel_and_rule() -> None:
    text = DOC.read_text()
    for spec in SERIES:
        assert f"`{spec.series}`" in text, spec.series
        assert f"`{spec.key}`" in text, spec.key
    for name, model in build_dashboards().items():
        assert f"`{name}.json`" in text and model["title"] in text
        for panel in model["panels"]:
            if panel["type"] != "row":
                assert f"| {panel['title']} |" in text, (name, panel["title"])
    for group in yaml.safe_load(RULES_FILE.read_text())["groups"]:
        for rule in group["rules"]:
            assert f"`{rule.get('alert') or rule.get('record')}`" in text


def test_doc_config_table_matches_the_config() -> None:
    from dataclasses import fields

    from easyr1.config.telemetry import AlertThresholds, PrometheusConfig, TelemetryConfig

    text = DOC.read_text()
    documented = set(re.findall(r"^\| `(telemetry\.[a-z_.0-9]+)` \|", text, re.M))
    expected = {f"telemetry.prometheus.{f.name}" for f in fields(PrometheusConfig)}
    expected |= {f"telemetry.alerts.{f.name}" for f in fields(AlertThresholds)}
    expected |= {f"telemetry.{f.name}" for f in fields(TelemetryConfig) if f.name not in ("prometheus", "alerts")}
    assert documented == expected
