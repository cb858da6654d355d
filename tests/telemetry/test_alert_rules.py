"""Recording and alert rules: promtool check/test, and consistency with the exporter and the config."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import yaml
from telemetry_testkit import RULES_FILE, RULES_TESTS_FILE, plain_rules_file, require_tool

from easyr1.config.telemetry import AlertThresholds

ALERTS = {
    "EasyR1NoStepCompleted",
    "EasyR1JudgeFailureRatioHigh",
    "EasyR1MaskedFractionHigh",
    "EasyR1RewardCollapse",
    "EasyR1JudgeCostAboveBudget",
    "EasyR1JudgeRetryRateHigh",
    "EasyR1WaitingForJudge",
}


def rules() -> list[dict]:
    spec = yaml.safe_load(RULES_FILE.read_text())
    return [rule for group in spec["groups"] for rule in group["rules"]]


def test_promtool_check_rules(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    plain = plain_rules_file(tmp_path / "rules.yml")
    result = subprocess.run([promtool, "check", "rules", str(plain)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_unit_tests() -> None:
    promtool = require_tool("promtool")
    result = subprocess.run(
        [promtool, "test", "rules", str(RULES_TESTS_FILE)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_unit_tests_can_fail(tmp_path: Path) -> None:
    """A wrong expectation makes promtool fail (the unit tests are not vacuous)."""
    promtool = require_tool("promtool")
    tests = yaml.safe_load(RULES_TESTS_FILE.read_text())
    tests["rule_files"] = [str(RULES_FILE)]
    for case in tests["tests"]:
        for alert_test in case.get("alert_rule_test", []):
            alert_test["exp_alerts"] = []  # claim nothing ever fires
    broken = tmp_path / "broken-tests.yml"
    broken.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", str(broken)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    for alert in ALERTS:
        assert f"alertname: {alert}" in result.stdout + result.stderr


def test_every_alert_is_present_labelled_and_tested() -> None:
    alerts = {r["alert"]: r for r in rules() if "alert" in r}
    assert set(alerts) == ALERTS
    tested = RULES_TESTS_FILE.read_text()
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert {"summary", "description"} <= set(rule["annotations"])
        assert "{{ $labels.job }}" in rule["annotations"]["summary"]
        assert rule["for"]
        assert f"alertname: {name}" in tested


def test_thresholds_come_from_the_config() -> None:
    """Each alert compares against easyr1_alert_threshold{alert=<a telemetry.alerts field>}."""
    fields = {f.name for f in dataclasses.fields(AlertThresholds)} | {
        "judge_retry_ratio",
        "judge_waiting_fraction",
    }  # judge.alert_*
    used = set()
    for rule in rules():
        if "alert" in rule:
            names = re.findall(r'alert="([a-z_0-9]+)"', rule["expr"])
            assert len(names) == 1, rule["alert"]
            used.update(names)
    assert used == fields


def test_rules_aggregate_by_namespace_and_job() -> None:
    for rule in rules():
        if "record" in rule:
            assert rule["record"].startswith("easyr1:")
            for by in re.findall(r"by \(([^)]*)\)", rule["expr"]):
                assert {"namespace", "job"} <= {label.strip() for label in by.split(",")}, rule["record"]
