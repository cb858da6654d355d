"""A distilled few-step LoRA and scheduler settings as editor configuration, on the tiny pipeline with a tiny LoRA
made here (random, non-zero adapter weights, saved with diffusers' own LoRA writer)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from easyr1.config import load_config
from easyr1.config.base import ConfigValidationError
from easyr1.core.types import EditRequest
from easyr1.editing.factory import build_editor

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def tiny_lora_dir(tiny_editor_dir, tmp_path_factory):
    import diffusers
    import torch
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(0)
    pipeline = diffusers.QwenImageEditPipeline.from_pretrained(tiny_editor_dir)
    config = LoraConfig(
        r=4, lora_alpha=256, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False
    )
    pipeline.transformer.add_adapter(config)
    out = tmp_path_factory.mktemp("lora")
    diffusers.QwenImageEditPipeline.save_lora_weights(
        out,
        transformer_lora_layers=get_peft_model_state_dict(pipeline.transformer),
        transformer_lora_adapter_metadata=config.to_dict(),  # keeps lora_alpha (the adapter's strength)
    )
    return out


def edit_pixels(cfg, make_image) -> np.ndarray:
    editor = build_editor(cfg)
    requests = [EditRequest(make_image(i), f"Add a red ball {i}", 10 + i, f"s{i}/0") for i in range(2)]
    results = editor.edit(requests)
    assert all(r.ok for r in results), [r.reason for r in results]
    return np.stack([np.asarray(r.image, dtype=np.int16) for r in results])


def test_the_lora_changes_the_edits_fused_or_live_alike_and_scale_zero_is_the_base(tiny_cfg, tiny_lora_dir, make_image):
    base = edit_pixels(tiny_cfg, make_image)
    fused = edit_pixels(dataclasses.replace(tiny_cfg, lora_path=str(tiny_lora_dir)), make_image)
    live = edit_pixels(dataclasses.replace(tiny_cfg, lora_path=str(tiny_lora_dir), fuse_lora=False), make_image)
    off = edit_pixels(
        dataclasses.replace(tiny_cfg, lora_path=str(tiny_lora_dir), lora_scale=0.0, fuse_lora=False), make_image
    )
    assert np.abs(fused - base).mean() > 1.0  # the adapter really acts on the transformer
    assert np.abs(fused - live).max() <= 2  # merging is the same function (up to rounding to 8-bit pixels)
    assert np.array_equal(off, base)


def test_a_lora_file_path_loads_and_is_named_in_the_result(tiny_cfg, tiny_lora_dir, make_image):
    (weights,) = tiny_lora_dir.glob("*.safetensors")
    editor = build_editor(dataclasses.replace(tiny_cfg, lora_path=str(weights)))
    (result,) = editor.edit([EditRequest(make_image(0), "Add a red ball", 3, "s0/0")])
    assert result.ok and result.info["lora"] == str(weights)


def test_scheduler_overrides_reach_the_pipeline_and_unknown_keys_fail(tiny_cfg):
    editor = build_editor(dataclasses.replace(tiny_cfg, scheduler={"shift": 3.0}))
    assert editor.pipeline.scheduler.config["shift"] == 3.0
    assert editor.pipeline.scheduler.config["use_dynamic_shifting"] is False  # the rest of its own config is kept
    with pytest.raises(ValueError, match=r"scheduler: \['shfit'\]"):
        build_editor(dataclasses.replace(tiny_cfg, scheduler={"shfit": 3.0}))


def test_a_missing_lora_path_is_named(tiny_cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"lora_path: .*nope"):
        build_editor(dataclasses.replace(tiny_cfg, lora_path=str(tmp_path / "nope")))


def test_config_overrides_and_validation(tmp_path):
    cfg = load_config(
        None,
        [
            "worker.image_edit.lora_path=/models/lightning-8step.safetensors",
            "worker.image_edit.scheduler.shift=3.0",
            "worker.image_edit.num_inference_steps=8",
            "worker.image_edit.true_cfg_scale=1.0",
        ],
    )
    assert cfg.worker.image_edit.scheduler == {"shift": 3.0}
    assert cfg.worker.image_edit.lora_path.endswith("8step.safetensors")
    with pytest.raises(ConfigValidationError, match="lora_path"):
        load_config(None, ["worker.image_edit.backend=sandbox", "worker.image_edit.lora_path=/x.safetensors"])
