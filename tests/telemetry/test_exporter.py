"""The Prometheus exporter: key → series mapping, counters, histograms, labels, the HTTP server, promtool lint."""

from __future__ import annotations

import json
import math
import random
import re
import subprocess
import urllib.error

import pytest
from prometheus_client.parser import text_string_to_metric_families
from telemetry_testkit import http_get, make_config, require_tool, run_synthetic_driver, synthetic_step

from easyr1.config import DIMENSIONS
from easyr1.telemetry import EXPORTER_FILE, SERIES, PrometheusExporter, Telemetry, git_revision, run_info_labels
from easyr1.telemetry.keys import STAGES

RUN_INFO_LABELS = {
    "model",
    "strategy",
    "adv_estimator",
    "rollout_engine",
    "editor_backend",
    "judge_backend",
    "judge_model",
    "project",
    "experiment",
    "revision",
    "version",
}
ALLOWED_LABELS = {"dimension", "reason", "stage", "outcome", "pool", "alert", "le"} | RUN_INFO_LABELS


@pytest.fixture
def exporter() -> PrometheusExporter:
    return PrometheusExporter(make_config(), revision="abc123")


def documented_names() -> set[str]:
    return {name for spec in SERIES for name in re.findall(r"easyr1_[a-z0-9_]+", spec.series)}


def exported_names(exporter: PrometheusExporter) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(exporter.render().decode()):
        for sample in family.samples:
            if sample.name.startswith("easyr1_"):
                names.add(
                    re.sub(r"_(bucket|count|sum)$", "", sample.name) if family.type == "histogram" else sample.name
                )
    return names


def value(exporter: PrometheusExporter, name: str, **labels: str) -> float | None:
    return exporter.registry.get_sample_value(name, labels)


def test_step_metrics_map_to_series(exporter: PrometheusExporter) -> None:
    rng = random.Random(1)
    first, second = synthetic_step(1, rng), synthetic_step(2, rng)
    exporter.update(1, first)
    exporter.update(2, second)

    assert value(exporter, "easyr1_global_step") == 2
    assert value(exporter, "easyr1_steps_total") == 2
    assert value(exporter, "easyr1_reward_mean", dimension="overall") == pytest.approx(second["reward/mean"])
    assert value(exporter, "easyr1_reward_mean", dimension="format") == pytest.approx(second["reward/format"])
    for dim in DIMENSIONS:
        assert value(exporter, "easyr1_reward_mean", dimension=dim) == pytest.approx(second[f"reward/{dim}"])
    # counts are per-step amounts: the counters hold their sum
    assert value(exporter, "easyr1_samples_total") == 32
    assert value(exporter, "easyr1_samples_valid_total") == first["samples/valid"] + second["samples/valid"]
    assert value(exporter, "easyr1_samples_masked_total", reason="judge_timeout") == (
        first["samples/masked/judge_timeout"] + second["samples/masked/judge_timeout"]
    )
    assert value(exporter, "easyr1_judge_requests_total", outcome="cached") == (
        first["judge/requests/cached"] + second["judge/requests/cached"]
    )
    assert value(exporter, "easyr1_judge_cost_usd_total") == pytest.approx(
        first["judge/cost_usd"] + second["judge/cost_usd"]
    )
    assert (
        value(exporter, "easyr1_judge_prompt_tokens_total")
        == first["judge/prompt_tokens"] + second["judge/prompt_tokens"]
    )
    # stage durations: a histogram observation per step plus the last value
    assert value(exporter, "easyr1_stage_duration_seconds_count", stage="rollout") == 2
    assert value(exporter, "easyr1_stage_duration_seconds_sum", stage="step") == pytest.approx(
        first["timing/step_s"] + second["timing/step_s"]
    )
    assert value(exporter, "easyr1_stage_last_duration_seconds", stage="edit") == pytest.approx(second["timing/edit_s"])
    assert value(exporter, "easyr1_stage_duration_seconds_count", stage="checkpoint") == 0  # no checkpoint in steps 1-2
    assert value(exporter, "easyr1_throughput_tokens_per_second") == pytest.approx(second["throughput/tokens_per_s"])
    assert value(exporter, "easyr1_judge_latency_p95_seconds") == pytest.approx(second["judge/latency_p95_s"])
    assert value(exporter, "easyr1_actor_kl") == pytest.approx(second["actor/kl"])
    assert value(exporter, "easyr1_actor_learning_rate") == pytest.approx(1e-6)
    assert value(exporter, "easyr1_actor_pg_clip_ratio") == pytest.approx(second["actor/pg_clipfrac"])
    for pool in ("rollout", "editor", "judge", "actor"):  # measured busy shares: the last step's value per pool
        assert value(exporter, "easyr1_pool_busy_ratio", pool=pool) == pytest.approx(second[f"pipeline/busy/{pool}"])
    assert value(exporter, "easyr1_policy_staleness_mean") == 1.0
    assert value(exporter, "easyr1_step_critical_path_seconds") == pytest.approx(second["pipeline/critical_path_s"])
    assert value(exporter, "easyr1_step_stage_overlap_seconds") == pytest.approx(second["pipeline/overlap_s"])
    # unknown keys (val/reward_mean) do not become series; every exported series is documented
    assert exported_names(exporter) <= documented_names()


def test_last_value_gauges_appear_only_once_reported(exporter: PrometheusExporter) -> None:
    text = exporter.render().decode()
    for name in ("easyr1_actor_kl", "easyr1_global_step", "easyr1_throughput_tokens_per_second"):
        assert not re.search(rf"^{name} ", text, re.M), f"{name} exported before any step reported it"
    assert value(exporter, "easyr1_last_step_timestamp_seconds") > 0  # the stall clock starts with the exporter
    exporter.update(5, {"actor/kl": 0.25})
    assert value(exporter, "easyr1_actor_kl") == 0.25
    assert value(exporter, "easyr1_global_step") == 5
    assert value(exporter, "easyr1_actor_entropy") is None


def test_per_item_histograms(exporter: PrometheusExporter) -> None:
    exporter.observe("reward", [1.0, 9.5, float("nan")], dimension="overall")
    exporter.observe("judge_latency", 2.5)
    exporter.observe("edit_latency", [0.3, 0.4])
    assert value(exporter, "easyr1_sample_reward_count", dimension="overall") == 2  # NaN is not an observation
    assert value(exporter, "easyr1_sample_reward_bucket", dimension="overall", le="1.0") == 1
    assert value(exporter, "easyr1_judge_latency_seconds_count") == 1
    assert value(exporter, "easyr1_edit_latency_seconds_sum") == pytest.approx(0.7)
    with pytest.raises(ValueError, match="unknown histogram"):
        exporter.observe("latency", 1.0)
    with pytest.raises(ValueError, match="dimension must be one of"):
        exporter.observe("reward", 1.0, dimension="sample-17")
    with pytest.raises(ValueError, match="unexpected labels"):
        exporter.observe("judge_latency", 1.0, sample_id="x")


def test_stage_observed_directly_is_not_counted_twice(exporter: PrometheusExporter) -> None:
    exporter.observe("stage_duration", 12.0, stage="checkpoint")
    exporter.update(1, {"timing/checkpoint_s": 12.0, "timing/update_s": 3.0})
    assert value(exporter, "easyr1_stage_duration_seconds_count", stage="checkpoint") == 1
    assert value(exporter, "easyr1_stage_last_duration_seconds", stage="checkpoint") == 12.0
    assert value(exporter, "easyr1_stage_duration_seconds_count", stage="update") == 1
    exporter.update(2, {"timing/checkpoint_s": 11.0})  # the next step is observed from the dict again
    assert value(exporter, "easyr1_stage_duration_seconds_count", stage="checkpoint") == 2
    with pytest.raises(ValueError, match="stage must be one of"):
        exporter.observe("stage_duration", 1.0, stage="lunch")


def test_bad_counter_amounts_are_skipped(exporter: PrometheusExporter, caplog: pytest.LogCaptureFixture) -> None:
    exporter.update(1, {"samples/total": 16, "judge/cost_usd": float("nan")})
    exporter.update(2, {"samples/total": -3, "judge/cost_usd": math.inf, "samples/valid": "many"})
    assert value(exporter, "easyr1_samples_total") == 16
    assert value(exporter, "easyr1_judge_cost_usd_total") == 0
    assert value(exporter, "easyr1_samples_valid_total") == 0
    assert "not a per-step amount" in caplog.text


def test_free_form_labels_are_tidied_and_bounded(exporter: PrometheusExporter) -> None:
    exporter.update(1, {"samples/masked/Judge Timeout!": 2, "judge/requests/HTTP 503": 1})
    assert value(exporter, "easyr1_samples_masked_total", reason="judge_timeout") == 2
    assert value(exporter, "easyr1_judge_requests_total", outcome="http_503") == 1
    exporter.update(2, {f"samples/masked/reason_{i}": 1 for i in range(100)})
    reasons = {
        s.labels["reason"]
        for family in text_string_to_metric_families(exporter.render().decode())
        if family.name == "easyr1_samples_masked"
        for s in family.samples
    }
    assert len(reasons) <= 32
    assert "other" in reasons
    assert value(exporter, "easyr1_samples_masked_total", reason="other") == 100 - 31 + 1


def test_config_series_pools_and_alert_thresholds() -> None:
    cfg = make_config(
        "worker.rollout.num_engines=2",
        "cluster.rollout.num_gpus_per_worker=4",
        "telemetry.alerts.stall_minutes=45",
    )
    exporter = PrometheusExporter(cfg, revision="abc123")
    assert value(exporter, "easyr1_pool_workers", pool="rollout") == 2
    assert value(exporter, "easyr1_pool_gpus", pool="rollout") == 8
    assert value(exporter, "easyr1_pool_workers", pool="editor") == cfg.worker.image_edit.num_replicas
    assert value(exporter, "easyr1_alert_threshold", alert="stall_minutes") == 45
    assert value(exporter, "easyr1_alert_threshold", alert="judge_cost_usd_per_hour") == math.inf  # no budget
    budget = PrometheusExporter(make_config("telemetry.alerts.judge_cost_usd_per_hour=12.5"), revision="x")
    assert value(budget, "easyr1_alert_threshold", alert="judge_cost_usd_per_hour") == 12.5


def test_run_info(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_config("worker.actor.model.model_path=/models/Qwen2.5-VL-7B/", "worker.reward.strategy=gated")
    labels = run_info_labels(cfg, revision="0123abcd")
    assert set(labels) == RUN_INFO_LABELS
    assert labels["model"] == "Qwen2.5-VL-7B"
    assert labels["strategy"] == "gated"
    assert labels["revision"] == "0123abcd"
    exporter = PrometheusExporter(cfg, revision="0123abcd")
    assert value(exporter, "easyr1_run_info", **labels) == 1
    git_revision.cache_clear()
    monkeypatch.setenv("EASYR1_GIT_REVISION", "built-from-ci")
    try:
        assert git_revision() == "built-from-ci"
    finally:
        git_revision.cache_clear()


def test_port_zero_serves_on_a_free_port_and_writes_the_address(tmp_path) -> None:
    telemetry = Telemetry(make_config(), tmp_path / "run", revision="abc")
    try:
        port = telemetry.exporter_port
        assert port and port > 0
        assert telemetry.exporter_url == f"http://127.0.0.1:{port}/metrics"
        info = json.loads((tmp_path / "run" / EXPORTER_FILE).read_text())
        assert info["port"] == port and info["url"] == telemetry.exporter_url
        body = http_get(telemetry.exporter_url).decode()
        assert "easyr1_run_info{" in body
    finally:
        telemetry.close()
    assert not (tmp_path / "run" / EXPORTER_FILE).exists()
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        http_get(f"http://127.0.0.1:{port}/metrics", timeout=1)


def test_disabled_exporter_serves_nothing(tmp_path) -> None:
    with Telemetry(make_config("telemetry.prometheus.enabled=false"), tmp_path) as telemetry:
        assert telemetry.exporter_port is None and telemetry.exporter_url is None
        telemetry.log_step(1, {"reward/mean": 1.0})
        telemetry.observe_judge_latency([1.0])  # a no-op, not an error


def test_live_output_passes_promtool_and_has_no_high_cardinality_labels(tmp_path) -> None:
    promtool = require_tool("promtool")
    with Telemetry(make_config(), tmp_path, revision="abc") as telemetry:
        run_synthetic_driver(telemetry, steps=5)
        body = http_get(telemetry.exporter_url)
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
    assert (result.stdout + result.stderr).strip() == b""
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    easyr1 = {name: f for name, f in families.items() if name.startswith("easyr1_")}
    assert len(easyr1) >= 30
    for family in easyr1.values():
        for sample in family.samples:
            assert set(sample.labels) <= ALLOWED_LABELS, (sample.name, sample.labels)
            assert not any("row-" in v for v in sample.labels.values()), sample  # no sample ids
    stage_values = {s.labels["stage"] for s in families["easyr1_stage_duration_seconds"].samples}
    assert stage_values == set(STAGES)
    series = sum(len(f.samples) for f in easyr1.values())
    assert series < 600, f"{series} easyr1 samples: cardinality grew"


def test_busy_port_is_a_clear_error(tmp_path) -> None:
    with Telemetry(make_config(), tmp_path / "first") as first:
        busy = make_config(f"telemetry.prometheus.port={first.exporter_port}")
        with pytest.raises(OSError, match=r"telemetry.prometheus: cannot listen on 127.0.0.1:\d+"):
            Telemetry(busy, tmp_path / "second")


def test_judge_retries_become_a_counter_by_reason() -> None:
    from easyr1.telemetry.exporter import PrometheusExporter

    exporter = PrometheusExporter(make_config(), revision="abc")
    exporter.update(1, {"judge/retries/http_429": 3, "judge/retries/timeout": 1})
    exporter.update(2, {"judge/retries/http_429": 2})
    text = exporter.render().decode()
    assert 'easyr1_judge_retries_total{reason="http_429"} 5.0' in text
    assert 'easyr1_judge_retries_total{reason="timeout"} 1.0' in text
    assert 'easyr1_alert_threshold{alert="judge_retry_ratio"} 0.5' in text
