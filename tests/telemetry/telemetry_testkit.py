"""Test helpers for telemetry: the Prometheus tools, a real Prometheus server on loopback, and a synthetic driver.

The synthetic driver calls :class:`easyr1.telemetry.Telemetry` exactly as the training driver does (log_step with
the key convention, per-sample observations, sample rows). An end-to-end test with the real driver replaces
:func:`run_synthetic_driver` by a sandbox run pointed at the same Prometheus.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from easyr1.config import DIMENSIONS, EasyR1Config, load_config
from easyr1.telemetry import SampleRow, Telemetry

REPO_ROOT = Path(__file__).resolve().parents[2]
HELM_FILES = REPO_ROOT / "helm" / "files"
RULES_FILE = HELM_FILES / "prometheus-rules.yaml"
RULES_TESTS_FILE = HELM_FILES / "prometheus-rules-tests.yaml"
DASHBOARD_DIR = HELM_FILES / "dashboards"
GRAFANA_SCHEMAS = Path(__file__).parents[2] / "../shared/grafana-schemas"

NAMESPACE = "easyr1-test"
JOB = "easyr1-driver"
MISSING_TOOL = "{tool} is not installed: `apt-get install -y prometheus` (the CI entry point .ci/run installs it)"


def require_tool(tool: str) -> str:
    """The path of ``promtool``/``prometheus``, or skip the test with a clear reason."""
    path = shutil.which(tool)
    if path is None:
        pytest.skip(MISSING_TOOL.format(tool=tool))
    return path


def make_config(*overrides: str) -> EasyR1Config:
    """A validated config with the exporter on a free loopback port and the given overrides."""
    return load_config(
        None,
        [
            "telemetry.prometheus.host=127.0.0.1",
            "telemetry.prometheus.port=0",
            "trainer.logger=[console,file]",
            *overrides,
        ],
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


# -- the synthetic driver ----------------------------------------------------------------------------------------
MASK_REASONS = ("judge_timeout", "edit_failed", "no_re_edit")


def synthetic_step(step: int, rng: random.Random, *, samples: int = 16) -> dict[str, Any]:
    """What one driver step reports: rewards, samples and masks, stage timings, throughput, judge, actor."""
    masked = {"judge_timeout": rng.randint(1, 2), "edit_failed": rng.randint(0, 1), "no_re_edit": rng.randint(0, 1)}
    valid = samples - sum(masked.values())
    dims = {d: min(10.0, max(0.0, rng.gauss(5.0 + 0.1 * step, 1.0))) for d in DIMENSIONS}
    fmt = min(5.0, max(0.0, rng.gauss(4.0, 0.4)))
    overall = 0.8 * max(dims.values(), key=lambda v: abs(v - 5.0)) + 0.2 * 2 * fmt
    stages = {
        "rollout": rng.uniform(20, 30),
        "edit": rng.uniform(30, 40),
        "judge": rng.uniform(10, 20),
        "reward": rng.uniform(0.05, 0.2),
        "old_logprob": rng.uniform(2, 4),
        "ref_logprob": rng.uniform(2, 4),
        "update": rng.uniform(6, 10),
        "sync": rng.uniform(1, 3),
    }
    if step % 4 == 0:
        stages["checkpoint"] = rng.uniform(10, 20)
    stages["step"] = sum(stages.values())
    prompt_tokens, completion_tokens = valid * 1200, valid * 40
    cache_hits = rng.randint(1, 3)
    metrics: dict[str, Any] = {
        "step": step,
        "reward/mean": overall,
        **{f"reward/{d}": v for d, v in dims.items()},
        "reward/format": fmt,
        "samples/total": samples,
        "samples/valid": valid,
        **{f"samples/masked/{reason}": n for reason, n in masked.items()},
        **{f"timing/{stage}_s": seconds for stage, seconds in stages.items()},
        "throughput/tokens_per_s": samples * 300 / stages["rollout"],
        "throughput/images_per_s": samples / stages["edit"],
        "throughput/samples_per_s": samples / stages["step"],
        "judge/requests/ok": valid - cache_hits,
        "judge/requests/cached": cache_hits,
        "judge/requests/timeout": masked["judge_timeout"],
        "judge/requests/rate_limited": rng.randint(0, 1),
        "judge/retries/http_429": rng.randint(0, 3),
        "judge/retries/timeout": rng.randint(0, 1),
        "judge/latency_p50_s": rng.uniform(2, 3),
        "judge/latency_p95_s": rng.uniform(5, 8),
        "judge/prompt_tokens": prompt_tokens,
        "judge/completion_tokens": completion_tokens,
        "judge/cost_usd": prompt_tokens / 1000 * 0.0025 + completion_tokens / 1000 * 0.01,
        "judge/cache_hits": cache_hits,
        "judge/cache_misses": samples - masked["edit_failed"] - masked["no_re_edit"] - cache_hits,
        "actor/kl": 1e-3 * step,
        "actor/entropy": 1.2 - 0.01 * step,
        "actor/grad_norm": rng.uniform(0.5, 1.5),
        "actor/lr": 1e-6,
        "actor/pg_loss": rng.uniform(-0.05, 0.05),
        "actor/pg_clipfrac": rng.uniform(0.0, 0.02),
        **{f"pipeline/busy/{pool}": rng.uniform(0.2, 0.9) for pool in ("rollout", "editor", "judge", "actor")},
        "pipeline/staleness_mean": 1.0 if step > 1 else 0.0,
        "pipeline/staleness_max": 1.0 if step > 1 else 0.0,
        "pipeline/critical_path_s": stages["step"] * 0.9,
        "pipeline/overlap_s": rng.uniform(0, 10),
        "val/reward_mean": overall - 0.3,  # a key without a Prometheus series: file/trackers only
    }
    return metrics


def sample_rows(step: int, rng: random.Random, count: int = 3) -> list[SampleRow]:
    """Sample rows with small images; the last one is a failed edit (no final image, no scores)."""
    rows = []
    for i in range(count):
        color = tuple(rng.randrange(256) for _ in range(3))
        source = Image.new("RGB", (64, 48), color)
        preliminary = Image.new("RGB", (64, 48), tuple(255 - c for c in color))
        failed = i == count - 1
        rows.append(
            SampleRow(
                source=source,
                preliminary=preliminary,
                final=None if failed else Image.new("RGB", (48, 64), "green"),
                cot=f"The shadow falls on the wrong side (sample {i}).",
                re_edit="Move the shadow to the left of the tree.",
                scores=None if failed else {d: round(rng.uniform(3, 8), 2) for d in DIMENSIONS},
                reward=None if failed else round(rng.uniform(3, 8), 2),
                status="edit_failed" if failed else "ok",
                format_score=4.5,
                instruction="make it rain",
                id=f"row-{step}-{i}",
            )
        )
    return rows


def run_synthetic_driver(
    telemetry: Telemetry, steps: int, *, pause_s: float = 0.0, seed: int = 0, first_step: int = 1
) -> list[dict[str, Any]]:
    """Drive ``telemetry`` like the trainer does for ``steps`` steps; returns the logged metrics dicts."""
    rng = random.Random(seed)
    logged = []
    for step in range(first_step, first_step + steps):
        metrics = synthetic_step(step, rng)
        valid = int(metrics["samples/valid"])
        telemetry.observe_rewards(
            {
                "overall": [rng.uniform(2, 9) for _ in range(valid)],
                "format": [rng.uniform(3, 5) for _ in range(valid)],
                **{d: [rng.uniform(0, 10) for _ in range(valid)] for d in DIMENSIONS},
            }
        )
        telemetry.observe_judge_latency([rng.uniform(0.5, 9) for _ in range(valid)])
        telemetry.observe_edit_latency([rng.uniform(1, 4) for _ in range(16)])
        telemetry.log_step(step, metrics)
        if telemetry.should_log_samples(step):
            telemetry.log_samples(step, sample_rows(step, rng))
        logged.append(metrics)
        if pause_s:
            time.sleep(pause_s)  # pacing so that Prometheus scrapes several steps, not a timing assertion
    return logged


# -- a real Prometheus on loopback ---------------------------------------------------------------------------------
def plain_rules_file(dest: Path, *, interval: str | None = None) -> Path:
    """The rules of the chart's PrometheusRule spec as a plain Prometheus rules file (optionally with a shorter
    evaluation interval for tests)."""
    spec = yaml.safe_load(RULES_FILE.read_text())
    assert set(spec) == {"groups"}, "prometheus-rules.yaml must hold only the PrometheusRule spec (groups)"
    if interval is not None:
        for group in spec["groups"]:
            group["interval"] = interval
    dest.write_text(yaml.safe_dump(spec, sort_keys=False))
    return dest


class PrometheusServer:
    """A Prometheus process started on 127.0.0.1 that scrapes ``targets`` every second."""

    def __init__(self, binary: str, workdir: Path, targets: list[str], rule_files: list[Path] = ()):
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [
                {
                    "job_name": JOB,
                    "metrics_path": "/metrics",
                    "static_configs": [{"targets": targets, "labels": {"namespace": NAMESPACE}}],
                }
            ],
        }
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "prometheus.log"

    def start(self, timeout_s: float = 60.0) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--web.enable-lifecycle",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait_for(lambda: http_get(f"{self.url}/-/ready", timeout=1).strip() != b"", timeout_s, "ready")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        body = json.loads(http_get(f"{self.url}/api/v1/{path}" + (f"?{query}" if query else "")))
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query at ``at`` (unix seconds; default now)."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = self.api("query", **params)
        return data["result"] if data["resultType"] == "vector" else [{"metric": {}, "value": data["result"]}]

    def wait_for(self, condition: Any, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log_path.read_text()[-2000:]}")
            try:
                if condition():
                    return
            except Exception as exc:  # not up yet
                last_error = exc
            time.sleep(0.25)
        raise TimeoutError(f"prometheus: {what} not reached in {timeout_s}s (last error: {last_error})")


@contextmanager
def prometheus_server(
    binary: str, workdir: Path, targets: list[str], rule_files: list[Path] = ()
) -> Iterator[PrometheusServer]:
    server = PrometheusServer(binary, workdir, targets, list(rule_files))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def substitute(expr: str, *, namespace: str = NAMESPACE, job: str = JOB, window: str = "1m") -> str:
    """A dashboard expression with Grafana's variables replaced as Grafana would for one namespace/job."""
    for name, value in (
        ("$__rate_interval", "1m"),
        ("$__range", "5m"),
        ("$namespace", namespace),
        ("$job", job),
        ("$window", window),
    ):
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr
