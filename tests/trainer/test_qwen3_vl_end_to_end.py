"""The Qwen3-VL family through the whole CPU loop (issue 22), with ``easyr1 demo`` on the sandbox preset (``hf``
rollout engine, 2 FSDP2 actor ranks): the demo builds a tiny real-architecture Qwen3-VL policy for
``worker.actor.model.model_family=qwen3_vl``, SFT warm start, GRPO (weight sync checked by the sync probe),
checkpoint, export, held-out evaluation; a second run pointed at the same folder (family ``auto``: detected from
its ``config.json``) resumes GRPO from the checkpoint and exports a folder transformers loads as Qwen3-VL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SMALL = (
    "sandbox.train_rows=16",
    "sandbox.val_rows=4",
    "sft.max_steps=1",
    "sandbox.vision_pretrain_steps=20",
    "data.max_response_length=24",
    "trainer.val_freq=-1",
    "trainer.val_before_train=false",
    "worker.rollout.sync_probe_interval=1",  # probe after every sync (the preset probes every 10th)
)


def demo(out: Path, steps: int, *extra: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "easyr1", "demo", "--out", str(out), "--steps", str(steps), *SMALL, *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=600)


def metric_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_qwen3_vl_demo_sft_grpo_resume_and_export(tmp_path):
    import torch
    import torch.distributed.checkpoint as dcp
    from transformers import AutoModelForImageTextToText, AutoProcessor, Qwen3VLForConditionalGeneration

    out = tmp_path / "demo"
    first = demo(out, 1, "worker.actor.model.model_family=qwen3_vl")
    assert first.returncode == 0, first.stderr[-3000:]
    for folder in ("tiny/policy", "sft", "final"):
        assert json.loads((out / folder / "config.json").read_text())["model_type"] == "qwen3_vl", folder
    assert json.loads((out / "demo_summary.json").read_text())["steps"] == 1

    second = demo(out, 2)  # the same folder, family auto: read from config.json; resumes from step 1
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stderr and "global_step_1" in second.stderr
    rows = metric_rows(out)
    assert {r["step"] for r in rows if "reward/mean" in r} == {1, 2}
    probes = [r["rollout/sync_probe_max_abs_diff"] for r in rows if "rollout/sync_probe_max_abs_diff" in r]
    assert len(probes) >= 2 and max(probes) < 1e-4, probes  # engine log-probs equal the actor's after each sync

    final, step = out / "final", out / "checkpoints" / "global_step_2"
    assert (final / "FROM").read_text() == step.name
    model = AutoModelForImageTextToText.from_pretrained(final)
    assert isinstance(model, Qwen3VLForConditionalGeneration)
    assert type(AutoProcessor.from_pretrained(final)).__name__ == "Qwen3VLProcessor"
    # The export holds the checkpoint's tensors under the transformers names (DeepStack merger included).
    state = model.state_dict()
    names = [
        "model.visual.deepstack_merger_list.0.linear_fc1.weight",
        "model.language_model.layers.0.mlp.up_proj.weight",
    ]
    saved = {n: torch.empty_like(state[n]) for n in names}
    dcp.load({"model": saved}, checkpoint_id=str(step / "actor" / "dcp"), no_dist=True)
    for name in names:
        assert torch.equal(state[name], saved[name]), name
    # Training (SFT, GRPO) moved the weights away from the random initialisation.
    tiny = AutoModelForImageTextToText.from_pretrained(out / "tiny" / "policy").state_dict()
    assert not torch.equal(state[names[1]], tiny[names[1]])
