"""LoRA through the whole CPU loop (issue 22): GRPO on the sandbox with ``worker.actor.lora.rank=8`` — adapter-only
checkpoints, resume, ``easyr1 export`` (merged and ``--adapter``) loadable by transformers/peft — and the demo
command accepting the same override."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_end_to_end import assets, read_rows, small_config  # noqa: F401  (the shared fixture)

from easyr1.trainer.entry import run_training

pytestmark = pytest.mark.slow

LORA = ("worker.actor.lora.rank=8", "worker.actor.lora.alpha=16")


def test_lora_sandbox_loop_resume_and_export(assets, tmp_path):  # noqa: F811
    import torch
    import torch.distributed.checkpoint as dcp
    from transformers import AutoModelForImageTextToText

    out = tmp_path / "run"
    run_training(small_config(assets, out, "trainer.max_steps=2", *LORA))
    rows = [r for r in read_rows(out) if "reward/mean" in r]
    assert [r["step"] for r in rows] == [1, 2]
    step2 = out / "checkpoints" / "global_step_2"
    meta = json.loads((step2 / "actor" / "meta.json").read_text())
    assert meta["trainable_only"] and meta["lora"]["rank"] == 8
    run_training(small_config(assets, out, "trainer.max_steps=3", *LORA))  # resume: auto from step 2
    assert {r["step"] for r in read_rows(out) if "reward/mean" in r} == {1, 2, 3}

    # The sandbox preset trains the vision tower: the merged export carries it, a PEFT adapter folder cannot.
    step3 = out / "checkpoints" / "global_step_3"
    results = {}
    for extra, name in (((), "merged"), (("--adapter",), "adapter")):
        results[name] = subprocess.run(
            [sys.executable, "-m", "easyr1", "export", str(step3), "--out", str(tmp_path / name), *extra],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert results["merged"].returncode == 0, results["merged"].stderr[-3000:]
    assert results["adapter"].returncode == 1 and "vision tower was trained" in results["adapter"].stderr
    merged = AutoModelForImageTextToText.from_pretrained(tmp_path / "merged").state_dict()
    base = AutoModelForImageTextToText.from_pretrained(assets / "policy").state_dict()
    assert merged.keys() == base.keys()
    # The export is the checkpoint's trained tensors over the base: the vision tower as saved, W + (alpha/r)·B·A.
    vision = "model.visual.blocks.0.attn.qkv.weight"
    q = "model.language_model.layers.0.self_attn.q_proj"
    saved = {
        vision: torch.empty_like(base[vision]),
        f"{q}.lora_A.default.weight": torch.empty(8, base[f"{q}.weight"].shape[1]),
        f"{q}.lora_B.default.weight": torch.empty(base[f"{q}.weight"].shape[0], 8),
    }
    dcp.load({"model": saved}, checkpoint_id=str(step3 / "actor" / "dcp"), no_dist=True)
    assert torch.equal(merged[vision], saved[vision])
    expected = base[f"{q}.weight"] + 2.0 * saved[f"{q}.lora_B.default.weight"] @ saved[f"{q}.lora_A.default.weight"]
    torch.testing.assert_close(merged[f"{q}.weight"], expected, rtol=0, atol=1e-6)
    assert all(torch.equal(merged[k], base[k]) for k in base if "embed_tokens" in k or "lm_head" in k)


def test_demo_accepts_lora(tmp_path):
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
            "1",
            "sandbox.train_rows=16",
            "sandbox.val_rows=4",
            "sft.max_steps=1",
            "sandbox.vision_pretrain_steps=0",
            "data.max_response_length=24",
            "trainer.val_freq=-1",
            "trainer.val_before_train=false",
            *LORA,
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "demo_summary.json").read_text())["steps"] == 1
    meta = json.loads((out / "checkpoints" / "global_step_1" / "actor" / "meta.json").read_text())
    assert meta["trainable_only"] and meta["lora"]["rank"] == 8
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert any(r.get("rollout/sync_probe_max_abs_diff", 1.0) < 1e-4 for r in rows), "the sync probe passed"
