"""A real Prometheus scrapes a run: every dashboard query returns data, every rule loads and evaluates.

The run here is the synthetic driver of telemetry_testkit (Telemetry driven like the trainer does). For an
end-to-end check with the real driver, replace ``drive`` by a sandbox run: the exporter's address is in
``<run_dir>/exporter.json``, and the queries are evaluated at the time of the last scraped step, so they may run
after the driver exited.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from telemetry_testkit import (
    JOB,
    NAMESPACE,
    PrometheusServer,
    make_config,
    plain_rules_file,
    prometheus_server,
    require_tool,
    run_synthetic_driver,
    substitute,
)

from easyr1.telemetry import Telemetry
from easyr1.telemetry.dashboards import build_dashboards, panel_queries

STEPS = 10


@dataclass
class ScrapedRun:
    prometheus: PrometheusServer
    at: float
    """Evaluation time: when Prometheus scraped the last step."""
    rules_at: float
    """A time after the rules were evaluated on the last step, while the exporter was still up."""
    run_dir: Path


def drive(telemetry: Telemetry) -> int:
    """The run under observation; returns its last step."""
    run_synthetic_driver(telemetry, steps=STEPS, pause_s=0.5)
    return STEPS


@pytest.fixture(scope="module")
def scraped_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScrapedRun]:
    binary = require_tool("prometheus")
    root = tmp_path_factory.mktemp("scrape")
    rules = plain_rules_file(root / "rules.yml", interval="1s")
    cfg = make_config("telemetry.alerts.judge_cost_usd_per_hour=50", "telemetry.log_images_every=5")
    telemetry = Telemetry(cfg, root / "run", revision="test-revision")
    try:
        target = f"127.0.0.1:{telemetry.exporter_port}"
        with prometheus_server(binary, root, [target], [rules]) as prometheus:
            prometheus.wait_for(
                lambda: any(t["health"] == "up" for t in prometheus.api("targets")["activeTargets"]), 60, "target up"
            )
            last_step = drive(telemetry)
            prometheus.wait_for(
                lambda: [float(r["value"][1]) for r in prometheus.query("easyr1_global_step")] == [last_step],
                60,
                f"step {last_step} scraped",
            )
            at = float(prometheus.query("easyr1_global_step")[0]["value"][0])
            prometheus.wait_for(lambda: _rules_evaluated_after(prometheus, at), 30, "rules evaluated")
            rules_at = time.time()
            telemetry.close()  # queries below run after the exporter is gone, as they would after a real run
            yield ScrapedRun(prometheus, at, rules_at, root / "run")
    finally:
        telemetry.close()


def _rules_evaluated_after(prometheus: PrometheusServer, at: float) -> bool:
    groups = prometheus.api("rules")["groups"]
    stamps = [g["lastEvaluation"] for g in groups]
    return bool(groups) and all(s and not s.startswith("0001") for s in stamps) and time.time() > at + 1.5


@pytest.mark.slow
def test_target_scraped_with_namespace_and_job(scraped_run: ScrapedRun) -> None:
    info = scraped_run.prometheus.query("easyr1_run_info", at=scraped_run.at)
    assert len(info) == 1
    labels = info[0]["metric"]
    assert labels["namespace"] == NAMESPACE and labels["job"] == JOB and labels["revision"] == "test-revision"
    # the dashboards' namespace/job variables: label_values(easyr1_run_info, ...)
    api = scraped_run.prometheus.api
    assert NAMESPACE in api("label/namespace/values", **{"match[]": "easyr1_run_info"})
    assert JOB in api("label/job/values", **{"match[]": f'easyr1_run_info{{namespace=~"{NAMESPACE}"}}'})


@pytest.mark.slow
def test_every_dashboard_query_returns_data(scraped_run: ScrapedRun) -> None:
    empty = []
    count = 0
    for name, model in build_dashboards().items():
        for title, expr in panel_queries(model):
            count += 1
            result = scraped_run.prometheus.query(substitute(expr), at=scraped_run.at)
            values = [float(r["value"][1]) for r in result]
            if not any(math.isfinite(v) for v in values):
                empty.append(f"{name} / {title}: {expr} -> {values}")
            # negative control: the same query for another job finds nothing
            other = scraped_run.prometheus.query(substitute(expr, job="another-job"), at=scraped_run.at)
            assert not any(math.isfinite(float(r["value"][1])) for r in other), (name, title)
    assert count > 50
    assert not empty, "queries without finite data:\n" + "\n".join(empty)


@pytest.mark.slow
def test_every_rule_loads_and_evaluates(scraped_run: ScrapedRun) -> None:
    groups = scraped_run.prometheus.api("rules")["groups"]
    loaded = [rule for group in groups for rule in group["rules"]]
    assert len(loaded) == 20
    for rule in loaded:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
    # every recording rule produced a series for this run
    for rule in loaded:
        if rule["type"] == "recording":
            result = scraped_run.prometheus.query(rule["name"], at=scraped_run.rules_at)
            assert result, rule["name"]
            assert result[0]["metric"]["namespace"] == NAMESPACE and result[0]["metric"]["job"] == JOB
    alerts = {rule["name"]: rule["state"] for rule in loaded if rule["type"] == "alerting"}
    assert len(alerts) == 7
    # a healthy short run: only the judge-failure alert may be pending (the synthetic judge times out ~10%)
    assert alerts["EasyR1NoStepCompleted"] == "inactive"
    assert alerts["EasyR1RewardCollapse"] == "inactive"
    assert alerts["EasyR1JudgeCostAboveBudget"] == "inactive"
    assert alerts["EasyR1JudgeRetryRateHigh"] == "inactive"  # a few retries per step, well under 0.5 per request
    assert alerts["EasyR1WaitingForJudge"] == "inactive"  # no outage in this run


@pytest.mark.slow
def test_run_folder_has_metrics_and_samples(scraped_run: ScrapedRun) -> None:
    lines = (scraped_run.run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == STEPS
    assert (scraped_run.run_dir / "samples" / "step_000005" / "index.html").is_file()
    assert (scraped_run.run_dir / "samples" / "step_000010" / "grid.png").is_file()
