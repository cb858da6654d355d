"""The whole loop on CPU with the tiny models: sandbox, test-server judge and tiny diffusers editor variants;
checkpoint/resume equality; export loadable by transformers; the demo command.

These start Ray and the pools (tens of seconds each), so they share one set of tiny models and sandbox data.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from easyr1.config import DIMENSIONS, load_config
from easyr1.trainer.checkpoint import CheckpointManager
from easyr1.trainer.entry import run_training

pytestmark = pytest.mark.slow

REQUIRED_KEYS = {
    "step",
    "reward/mean",
    "reward/format",
    *(f"reward/{d}" for d in DIMENSIONS),
    "samples/total",
    "samples/valid",
    "timing/rollout_s",
    "timing/edit_s",
    "timing/judge_s",
    "timing/update_s",
    "timing/sync_s",
    "data/digest",
}
# A response that the sandbox editor understands: reward, edit and judge really run.
ANSWER = "<CoT>The shadows fall the wrong way.</CoT>\n<Re_edit>Cast the shadows to the right</Re_edit>"


@pytest.fixture(scope="module")
def assets(tmp_path_factory, repo_root):
    from easyr1.models.tiny import build_tiny_policy
    from easyr1.sandbox.generator import write_sandbox_dataset

    root = tmp_path_factory.mktemp("e2e")
    build_tiny_policy(root / "policy", seed=0)
    write_sandbox_dataset(root / "data" / "train", rows=16, seed=0, image_size=32)
    write_sandbox_dataset(root / "data" / "val", rows=4, seed=0, image_size=32, split="val")
    return root


EXAMPLE = Path(__file__).parents[2] / "examples" / "sandbox.yaml"


def small_overrides(assets: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"data.train_files={assets / 'data' / 'train'}",
        f"data.val_files={assets / 'data' / 'val'}",
        f"worker.actor.model.model_path={assets / 'policy'}",
        f"trainer.output_dir={out}",
        "data.rollout_batch_size=2",
        "data.val_batch_size=4",
        "data.max_response_length=24",
        "worker.actor.global_batch_size=2",
        "worker.actor.micro_batch_size_per_device_for_update=2",
        "worker.actor.micro_batch_size_per_device_for_experience=4",
        "worker.rollout.n=2",
        "trainer.logger=[file]",
        "trainer.val_freq=-1",
        "trainer.val_before_train=false",
        "telemetry.prometheus.enabled=false",
        "trainer.save_freq=1",
        "trainer.save_limit=-1",
        *extra,
    ]


def small_config(assets: Path, out: Path, *extra: str):
    return load_config(EXAMPLE, small_overrides(assets, out, *extra))


def read_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_sandbox_loop_resume_and_export(assets, tmp_path):
    # Uninterrupted: 4 steps.
    full = tmp_path / "full"
    run_training(small_config(assets, full, "trainer.max_steps=4"))
    full_rows = [r for r in read_rows(full) if "reward/mean" in r]
    assert [r["step"] for r in full_rows] == [1, 2, 3, 4]
    for row in full_rows:
        assert row.keys() >= REQUIRED_KEYS, REQUIRED_KEYS - row.keys()
        masked = sum(v for k, v in row.items() if k.startswith("samples/masked/"))
        assert row["samples/valid"] + masked == row["samples/total"] == 4
    # `easyr1 train` killed with SIGKILL (the whole process group, Ray included) once step 2 is checkpointed —
    # possibly in the middle of writing step 3's — then resumed with resume: auto to step 4.
    part = tmp_path / "part"
    proc = subprocess.Popen(
        [sys.executable, "-m", "easyr1", "train", str(EXAMPLE), *small_overrides(assets, part, "trainer.max_steps=4")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 400
        while not (part / "checkpoints" / "global_step_2" / "COMPLETE").exists():
            assert proc.poll() is None, "training ended before it could be killed"
            assert time.time() < deadline, "no checkpoint of step 2 in time"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    manager = CheckpointManager(part / "checkpoints")
    killed_at = manager.latest().step
    assert killed_at >= 2
    run_training(small_config(assets, part, "trainer.max_steps=4"))
    part_rows = {r["step"]: r for r in read_rows(part) if "reward/mean" in r}  # the resumed run re-logs its steps
    assert sorted(part_rows) == [1, 2, 3, 4]
    assert [part_rows[s]["data/digest"] for s in (1, 2, 3, 4)] == [r["data/digest"] for r in full_rows]
    assert not [p for p in (part / "checkpoints").iterdir() if ".tmp-" in p.name]

    # Export the last checkpoint and load it with transformers.
    from transformers import AutoModelForImageTextToText, AutoProcessor

    exported = tmp_path / "hf"
    result = subprocess.run(
        [sys.executable, "-m", "easyr1", "export", str(part / "checkpoints" / "global_step_4"), "--out", str(exported)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    model = AutoModelForImageTextToText.from_pretrained(exported)
    AutoProcessor.from_pretrained(exported)
    assert model.config.model_type == "qwen2_5_vl"
    assert any(p.suffix == ".safetensors" for p in exported.iterdir())


def test_openai_judge_over_http(assets, tmp_path, monkeypatch):
    """The driver with the real OpenAI client against the loopback test server; a failing dimension masks."""
    from easyr1.testing.judge_server import JudgeTestServer, Rule, ServerBehaviour

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-e2e-secret")
    behaviour = ServerBehaviour(default_score=6.0, rules=[Rule(kind="malformed", times=1)])
    out = tmp_path / "run"
    with JudgeTestServer(behaviour) as server:
        cfg = small_config(
            assets,
            out,
            "trainer.max_steps=2",
            "judge.backend=openai",
            f"judge.base_url={server.base_url}",
            "judge.mode=single_call",
            "judge.max_retries=0",
            # A fallback instruction makes every response reach the editor and the judge.
            "worker.reward.missing_re_edit=fallback_instruction",
        )
        run_training(cfg)
        requests = server.request_count
    rows = [r for r in read_rows(out) if "reward/mean" in r]
    assert len(rows) == 2 and requests >= 8
    first = rows[0]
    assert first["samples/masked/judge:unparsable"] == 1
    assert first["judge/requests/unparsable"] == 1
    assert math.isfinite(first["reward/mean"])
    assert all(first[f"reward/{d}"] == pytest.approx(6.0) for d in DIMENSIONS)
    for path in out.rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert b"sk-test-e2e-secret" not in path.read_bytes(), path


def test_tiny_diffusers_editor_through_the_pool(assets, tmp_path, monkeypatch):
    """The Qwen-Image-Edit code path (tiny random pipeline in the Ray editor pool) inside the loop, judged over
    HTTP (the sandbox judge reads scene state, which a diffusion edit does not carry)."""
    from easyr1.models.tiny_editor import build_tiny_editor
    from easyr1.testing.judge_server import JudgeTestServer, ServerBehaviour

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    editor_dir = build_tiny_editor(tmp_path / "editor", seed=0)
    out = tmp_path / "run"
    with JudgeTestServer(ServerBehaviour(default_score=5.0)) as server:
        cfg = small_config(
            assets,
            out,
            "trainer.max_steps=1",
            "worker.image_edit.backend=qwen_image_edit",
            f"worker.image_edit.model_path={editor_dir}",
            "worker.image_edit.num_inference_steps=2",
            "worker.image_edit.target_area=4096",
            "worker.reward.missing_re_edit=fallback_instruction",
            "judge.backend=openai",
            f"judge.base_url={server.base_url}",
        )
        run_training(cfg)
    (row,) = [r for r in read_rows(out) if "reward/mean" in r]
    assert row["samples/total"] == 4
    assert row["editor/edits/ok"] + row.get("editor/dedupe_saved", 0) == 4
    assert row["samples/edit_failed"] == 0
    assert row["samples/valid"] + sum(v for k, v in row.items() if k.startswith("samples/masked/")) == 4


def test_demo_command_smoke(tmp_path):
    """The README's main command, shortened: tiny models, sandbox data, a few SFT steps, 2 GRPO steps, report."""
    out = tmp_path / "demo"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "easyr1",
            "demo",
            "--out",
            str(out),
            "--steps",
            "2",
            "sandbox.train_rows=16",
            "sandbox.val_rows=4",
            "sft.max_steps=2",
            "sandbox.vision_pretrain_steps=20",
            "data.max_response_length=24",
            "trainer.val_freq=-1",
            "trainer.val_before_train=false",
            "trainer.logger=[console,file,tensorboard]",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "report.html").is_file() and (out / "summary.json").is_file()
    assert (out / "sft" / "config.json").is_file()
    summary = json.loads((out / "demo_summary.json").read_text())
    assert summary["steps"] == 2
    assert summary["vision_pretraining"]["steps"] == 20  # the preset's vision pretraining ran, shortened
    assert "vision tower pretrained on rendered scenes: 20 steps" in result.stderr
    assert "report:" in result.stderr
