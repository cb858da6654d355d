"""A real Prometheus scrapes a real sandbox training run (the GRPO driver on local Ray: FSDP actor, hf rollout,
sandbox editor pool and judge): every dashboard panel query returns data for the run.

``test_prometheus_scrape.py`` does the same against a synthetic driver (faster, exercises every failure series);
this one proves the driver emits what the dashboards read.
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import pytest
from telemetry_testkit import JOB, NAMESPACE, prometheus_server, require_tool, substitute

from easyr1.config import load_config
from easyr1.telemetry.dashboards import build_dashboards, panel_queries

pytestmark = pytest.mark.slow
STEPS = 8
# Panels that are empty in a healthy run by design (checked below: the run really had no such failures).
EMPTY_WHEN_HEALTHY = {
    "Errors by reason": "judge failures only; the sandbox judge had none in this run",
    "Retries by cause (HTTP status, timeout, connection)": "HTTP retries only; the sandbox judge makes no HTTP calls",
}


def test_dashboards_have_data_from_a_sandbox_training_run(tmp_path: Path, repo_root: Path) -> None:
    from easyr1.models.tiny import build_tiny_policy
    from easyr1.sandbox.generator import write_sandbox_dataset
    from easyr1.trainer.entry import run_training

    binary = require_tool("prometheus")
    build_tiny_policy(tmp_path / "policy", seed=0)
    write_sandbox_dataset(tmp_path / "data", rows=32, seed=0, image_size=32)
    port_file = tmp_path / "port"
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    port_file.write_text(str(port))
    cfg = load_config(
        repo_root / "examples" / "sandbox.yaml",
        [
            f"data.train_files={tmp_path / 'data'}",
            "data.val_files=null",
            f"worker.actor.model.model_path={tmp_path / 'policy'}",
            f"trainer.output_dir={tmp_path / 'run'}",
            "data.rollout_batch_size=2",
            "data.max_response_length=24",
            "worker.actor.global_batch_size=2",
            "worker.actor.micro_batch_size_per_device_for_update=2",
            "worker.rollout.n=2",
            "worker.reward.missing_re_edit=fallback_instruction",
            "worker.image_edit.num_replicas=2",  # the Ray editor pool, so the pool panels have data
            "cluster.num_cpus=6",
            f"trainer.max_steps={STEPS}",
            "trainer.logger=[file]",
            "trainer.val_freq=-1",
            "trainer.val_before_train=false",
            "trainer.save_freq=-1",
            "telemetry.prometheus.host=127.0.0.1",
            "telemetry.alerts.judge_cost_usd_per_hour=50",
            f"telemetry.prometheus.port={port}",
        ],
    )
    with prometheus_server(binary, tmp_path, [f"127.0.0.1:{port}"]) as prometheus:
        errors: list[BaseException] = []
        thread = threading.Thread(target=lambda: _run(run_training, cfg, errors))
        thread.start()
        thread.join(timeout=600)
        assert not thread.is_alive(), "training did not finish"
        assert not errors, errors
        # The last scrape of the run (the exporter stops when the run ends, after which its series go stale).
        now = time.time()
        series = prometheus.api(
            "query_range", query="easyr1_global_step", start=f"{now - 900:.3f}", end=f"{now:.3f}", step="1"
        )
        assert series["result"], "Prometheus never scraped the driver"
        last_time, last_step = series["result"][0]["values"][-1]
        at = float(last_time)
        assert float(last_step) >= 2
        empty = []
        for name, model in build_dashboards().items():
            for title, expr in panel_queries(model):
                result = prometheus.query(substitute(expr, namespace=NAMESPACE, job=JOB, window="10m"), at=at)
                if not any(math.isfinite(float(r["value"][1])) for r in result):
                    empty.append(f"{name} / {title}: {expr}")
        rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
        assert sum(r.get("samples/judge_failed", 0) for r in rows) == 0
        unexpected = [e for e in empty if e.split(" / ", 1)[1].split(":", 1)[0] not in EMPTY_WHEN_HEALTHY]
        assert not unexpected, "panels without data from a real sandbox run:\n" + "\n".join(unexpected)


def _run(fn, cfg, errors) -> None:
    try:
        fn(cfg)
    except BaseException as exc:  # surfaced by the test thread
        errors.append(exc)
