"""A real Prometheus scrapes a real sandbox training run (the GRPO driver on local Ray: FSDP actor, hf rollout,
sandbox editor pool and judge): every dashboard panel query returns data for the run.

``test_prometheus_scrape.py`` does the same against a synthetic driver (faster, exercises every failure series);
this one proves the driver emits what the dashboards read.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest
from telemetry_testkit import JOB, NAMESPACE, prometheus_server, require_tool, substitute

from easyr1.config import load_config
from easyr1.telemetry.dashboards import build_dashboards, panel_queries

pytestmark = pytest.mark.slow
STEPS = 8
# Panels that read series a sandbox run cannot produce: the HTTP judge's token/cost counters are produced
# (as zeros) by every judge, so nothing is excluded today — keep this list empty unless a panel is truly
# backend-specific, and say why.
BACKEND_SPECIFIC: dict[str, str] = {}


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
            "worker.actor.micro_batch_size_per_device_for_update=4",
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
        # The newest scraped step (the exporter stops when the run ends; the last step may not be scraped).
        data = prometheus.api("query", query="max_over_time(easyr1_global_step[10m])")
        assert data["result"], "Prometheus never scraped the driver"
        scraped = prometheus.api("query", query="timestamp(easyr1_global_step)", time=data["result"][0]["value"][0])
        at = float(scraped["result"][0]["value"][1]) if scraped["result"] else float(data["result"][0]["value"][0])
        assert float(data["result"][0]["value"][1]) >= 2
        empty = []
        for name, model in build_dashboards().items():
            for title, expr in panel_queries(model):
                if title in BACKEND_SPECIFIC:
                    continue
                result = prometheus.query(substitute(expr, namespace=NAMESPACE, job=JOB, window="10m"), at=at)
                if not any(math.isfinite(float(r["value"][1])) for r in result):
                    empty.append(f"{name} / {title}: {expr}")
        assert not empty, "panels without data from a real sandbox run:\n" + "\n".join(empty)


def _run(fn, cfg, errors) -> None:
    try:
        fn(cfg)
    except BaseException as exc:  # surfaced by the test thread
        errors.append(exc)
