"""Grafana dashboards: generated files up to date, valid against Grafana's schemas, queries well-formed."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from telemetry_testkit import (
    DASHBOARD_DIR,
    GRAFANA_SCHEMAS,
    make_config,
    require_tool,
    run_synthetic_driver,
    substitute,
)

from easyr1.telemetry import PrometheusExporter
from easyr1.telemetry.dashboards import BUILDERS, build_dashboards, panel_queries, stale_dashboards

PANEL_TYPES = {"timeseries", "stat", "table", "row"}


@pytest.fixture(scope="module")
def models() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


@pytest.fixture(scope="module")
def schemas() -> dict[str, dict[str, Any]]:
    if not GRAFANA_SCHEMAS.is_dir():
        pytest.skip(f"Grafana schemas folder {GRAFANA_SCHEMAS.resolve()} is absent (a clone outside the workplace)")
    return {p.name.split(".")[0]: json.loads(p.read_text()) for p in GRAFANA_SCHEMAS.glob("*.jsonschema.json")}


def definition(schema: dict[str, Any], name: str) -> dict[str, Any]:
    """A schema for ``#/definitions/<name>`` that keeps the file's other definitions for $ref."""
    return {"$ref": f"#/definitions/{name}", "definitions": schema["definitions"]}


def all_panels(model: dict[str, Any]) -> list[dict[str, Any]]:
    return [inner for panel in model["panels"] for inner in [panel, *panel.get("panels", [])]]


def test_files_match_the_builder(models: dict[str, dict[str, Any]]) -> None:
    assert stale_dashboards(DASHBOARD_DIR) == [], "run: python -m easyr1.telemetry.dashboards"
    assert set(models) == set(BUILDERS)
    assert set(BUILDERS) == {"easyr1-overview", "easyr1-reward", "easyr1-judge", "easyr1-throughput", "easyr1-pools"}


def test_dashboards_validate_against_grafana_schemas(
    models: dict[str, dict[str, Any]], schemas: dict[str, dict[str, Any]]
) -> None:
    dashboard_schema = schemas["dashboard"]
    jsonschema.Draft7Validator.check_schema(dashboard_schema)
    for name, model in models.items():
        jsonschema.Draft7Validator(dashboard_schema).validate(model)
        for panel in all_panels(model):
            assert panel["type"] in PANEL_TYPES, (name, panel["type"])
            if panel["type"] == "row":
                continue
            plugin = schemas[panel["type"]]
            jsonschema.Draft7Validator(definition(plugin, "Options")).validate(panel["options"])
            custom = panel["fieldConfig"]["defaults"].get("custom")
            if custom is not None:
                jsonschema.Draft7Validator(definition(plugin, "FieldConfig")).validate(custom)
            for t in panel["targets"]:
                jsonschema.Draft7Validator(schemas["prometheus"]).validate(t)


def test_a_broken_dashboard_is_rejected(schemas: dict[str, dict[str, Any]]) -> None:
    """The validation above can fail: unknown keys and bad panel options are caught."""
    model = build_dashboards()["easyr1-judge"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schemas["dashboard"]).validate({**model, "pannels": []})
    panel = next(p for p in model["panels"] if p["type"] == "timeseries")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(definition(schemas["timeseries"], "Options")).validate({"legend": {}})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schemas["prometheus"]).validate({**panel["targets"][0], "query": "up"})


def test_layout_variables_and_filters(models: dict[str, dict[str, Any]]) -> None:
    uids = set()
    for name, model in models.items():
        assert model["uid"] == name and model["uid"] not in uids
        uids.add(model["uid"])
        variables = {v["name"]: v for v in model["templating"]["list"]}
        assert {"datasource", "namespace", "job", "window"} <= set(variables)
        assert "easyr1_run_info" in variables["namespace"]["query"]
        assert "$namespace" in variables["job"]["query"]
        panels = all_panels(model)
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), name
        for panel in panels:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24
            if panel["type"] != "row":
                assert panel["title"] and panel["targets"], (name, panel["title"])
                assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for title, expr in panel_queries(model):
            # every selector of every query filters on namespace and job
            selectors = re.findall(r"\{([^{}]*)\}", re.sub(r"\{\{[^}]*\}\}", "", expr))
            assert selectors, (name, title, expr)
            for selector in selectors:
                assert 'namespace=~"$namespace"' in selector and 'job=~"$job"' in selector, (name, title, expr)


def test_required_panels_exist(models: dict[str, dict[str, Any]]) -> None:
    titles = {name: {p.get("title", "") for p in all_panels(m)} for name, m in models.items()}
    judge = " | ".join(titles["easyr1-judge"]).lower()
    for needle in ("latency p50 / p95", "errors by reason", "cost per hour", "cache hit rate", "retries by cause"):
        assert needle in judge
    assert "Judge dimensions (step mean, 0-10)" in titles["easyr1-reward"]
    for title in ("Busy ratio per pool (measured)", "Step wall vs critical path", "Policy staleness (off_policy_1)"):
        assert title in titles["easyr1-pools"]
    assert "Share of step time by stage" in titles["easyr1-throughput"]


def test_panel_queries_are_valid_promql(tmp_path: Path, models: dict[str, dict[str, Any]]) -> None:
    promtool = require_tool("promtool")
    rules = [
        {"record": f"check:{name.replace('-', '_')}:{i}", "expr": substitute(expr)}
        for name, model in models.items()
        for i, (_, expr) in enumerate(panel_queries(model))
    ]
    path = tmp_path / "panel-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout


def test_panel_metrics_are_exported() -> None:
    """Every metric a panel reads is one the exporter publishes (after a few steps)."""
    exporter = PrometheusExporter(make_config(), revision="abc")

    class Driver:  # the exporter-facing half of Telemetry
        def log_step(self, step: int, metrics: dict[str, Any]) -> None:
            exporter.update(step, metrics)

        def observe_rewards(self, values: dict[str, list[float]]) -> None:
            for dim, v in values.items():
                exporter.observe("reward", v, dimension=dim)

        def observe_judge_latency(self, v: list[float]) -> None:
            exporter.observe("judge_latency", v)

        def observe_edit_latency(self, v: list[float]) -> None:
            exporter.observe("edit_latency", v)

        def should_log_samples(self, step: int) -> bool:
            return False

    run_synthetic_driver(Driver(), steps=4)  # type: ignore[arg-type]
    exported = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", exporter.render().decode(), re.M))
    for name, model in build_dashboards().items():
        for title, expr in panel_queries(model):
            for metric in re.findall(r"\b((?:easyr1|process)_[a-z0-9_]+)\b", expr):
                assert metric in exported, (name, title, metric)
