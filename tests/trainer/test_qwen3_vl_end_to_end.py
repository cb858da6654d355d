"""The Qwen3-VL family through the whole CPU loop (issue 22): a tiny real-architecture Qwen3-VL policy trained by
GRPO on the sandbox with the ``hf`` rollout engine — weight sync checked by the sync probe, checkpoint, resume,
``easyr1 export`` loadable by transformers — and the demo building a Qwen3-VL policy for ``model_family=qwen3_vl``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_end_to_end import read_rows, small_config

from easyr1.trainer.entry import run_training

pytestmark = pytest.mark.slow

QWEN3 = ("worker.actor.model.model_family=qwen3_vl",)


@pytest.fixture(scope="module")
def qwen3_assets(tmp_path_factory):
    from easyr1.models.tiny import build_tiny_policy
    from easyr1.sandbox.generator import write_sandbox_dataset

    root = tmp_path_factory.mktemp("qwen3_e2e")
    build_tiny_policy(root / "policy", seed=0, family="qwen3_vl")
    write_sandbox_dataset(root / "data" / "train", rows=16, seed=0, image_size=32)
    write_sandbox_dataset(root / "data" / "val", rows=4, seed=0, image_size=32, split="val")
    return root


def test_qwen3_vl_sandbox_loop_resume_and_export(qwen3_assets, tmp_path):
    import torch
    import torch.distributed.checkpoint as dcp
    from transformers import AutoModelForImageTextToText, AutoProcessor, Qwen3VLForConditionalGeneration

    out = tmp_path / "run"
    run_training(small_config(qwen3_assets, out, "trainer.max_steps=1", *QWEN3))
    rows = [r for r in read_rows(out) if "reward/mean" in r]
    assert [r["step"] for r in rows] == [1] and rows[0]["samples/total"] == 4
    run_training(small_config(qwen3_assets, out, "trainer.max_steps=2", *QWEN3))  # resume: auto from step 1
    rows = read_rows(out)
    assert {r["step"] for r in rows if "reward/mean" in r} == {1, 2}
    probes = [r["rollout/sync_probe_max_abs_diff"] for r in rows if "rollout/sync_probe_max_abs_diff" in r]
    assert probes and max(probes) < 1e-4, probes  # the engine's log-probs equal the actor's after each sync

    step = out / "checkpoints" / "global_step_2"
    exported = tmp_path / "hf"
    result = subprocess.run(
        [sys.executable, "-m", "easyr1", "export", str(step), "--out", str(exported)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    model = AutoModelForImageTextToText.from_pretrained(exported)
    assert isinstance(model, Qwen3VLForConditionalGeneration)
    assert type(AutoProcessor.from_pretrained(exported)).__name__ == "Qwen3VLProcessor"
    # The export holds the checkpoint's tensors under the transformers names (DeepStack merger included).
    state = model.state_dict()
    base = AutoModelForImageTextToText.from_pretrained(qwen3_assets / "policy").state_dict()
    assert state.keys() == base.keys()
    names = [
        "model.visual.deepstack_merger_list.0.linear_fc1.weight",
        "model.language_model.layers.0.mlp.up_proj.weight",
    ]
    saved = {n: torch.empty_like(base[n]) for n in names}
    dcp.load({"model": saved}, checkpoint_id=str(step / "actor" / "dcp"), no_dist=True)
    for name in names:
        assert torch.equal(state[name], saved[name]), name


def test_demo_builds_a_qwen3_vl_policy_for_the_family(tmp_path):
    from easyr1.config import load_config
    from easyr1.trainer.demo import demo_overrides, prepare, preset_path

    out = tmp_path / "demo"
    overrides = [*demo_overrides(out, steps=1, seed=0), "sandbox.train_rows=8", "sandbox.val_rows=4", *QWEN3]
    cfg = load_config(preset_path(), overrides)
    prepare(cfg, out, seed=0)
    config = json.loads((out / "tiny" / "policy" / "config.json").read_text())
    assert config["model_type"] == "qwen3_vl"
    assert config["text_config"]["hidden_size"] == 128  # the sandbox spec, as for Qwen2.5-VL
