"""``easyr1 demo worker.rollout.name=vllm`` on CPU, shortened: the whole loop (SFT warm start, validation with
greedy n > 1, GRPO steps, collective weight sync with the probe check) with the vLLM engine in ``.venv-vllm``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from rollout_testkit import requires_vllm

pytestmark = [pytest.mark.slow, requires_vllm]


def test_demo_with_the_vllm_engine(tmp_path) -> None:
    out = tmp_path / "demo"
    overrides = [
        "worker.rollout.name=vllm",
        "worker.rollout.kv_cache_memory_gb=0.25",
        "worker.rollout.sync_probe_tolerance=1e-4",
        "worker.rollout.sync_probe_interval=1",
        "worker.rollout.val_override_config.n=2",
        "sandbox.train_rows=16",
        "sandbox.val_rows=4",
        "sft.max_steps=2",
        "sandbox.vision_pretrain_steps=20",
        "data.max_response_length=24",
        "trainer.val_freq=-1",
        "trainer.val_before_train=true",
        "trainer.logger=[console,file]",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "easyr1", "demo", "--out", str(out), "--steps", "2", *overrides],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert json.loads((out / "demo_summary.json").read_text())["steps"] == 2
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    synced = [r for r in rows if "rollout/sync_probe_max_abs_diff" in r]
    assert len(synced) == 2 and all(r["rollout/sync_probe_max_abs_diff"] <= 1e-4 for r in synced)
    assert any(k.startswith("val/") for r in rows for k in r), "validation ran (greedy, n=2)"
