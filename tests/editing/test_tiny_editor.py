"""The tiny Qwen-Image-Edit pipeline: real diffusers classes, save → load round trip, deterministic by seed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from easyr1.models.tiny_editor import build_tiny_editor


def folder_digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_saved_folder_is_a_qwen_image_edit_pipeline(tiny_editor_dir):
    index = json.loads((tiny_editor_dir / "model_index.json").read_text())
    assert index["_class_name"] == "QwenImageEditPipeline"
    assert index["text_encoder"] == ["transformers", "Qwen2_5_VLForConditionalGeneration"]
    assert index["processor"] == ["transformers", "Qwen2VLProcessor"]
    for part in ("transformer", "vae", "scheduler", "text_encoder", "tokenizer", "processor"):
        assert (tiny_editor_dir / part).is_dir()


def test_loads_with_from_pretrained_and_edits_a_64px_image_in_two_steps(tiny_editor_dir, make_image):
    import torch
    from diffusers import QwenImageEditPipeline

    from easyr1.editing.resolution import condition_area

    pipe = QwenImageEditPipeline.from_pretrained(tiny_editor_dir)
    pipe.set_progress_bar_config(disable=True)
    assert sum(p.numel() for p in pipe.transformer.parameters()) < 1_000_000
    special = pipe.tokenizer.convert_tokens_to_ids(["<|image_pad|>", "<|vision_start|>"])
    assert special == [pipe.text_encoder.config.image_token_id, pipe.text_encoder.config.vision_start_token_id]
    with condition_area(QwenImageEditPipeline, 64 * 64):
        out = pipe(
            image=make_image(0),
            prompt="Add a red ball",
            num_inference_steps=2,
            height=64,
            width=96,
            true_cfg_scale=1.0,
            generator=torch.Generator().manual_seed(0),
        )
    assert out.images[0].size == (96, 64)


@pytest.mark.slow
def test_same_seed_same_files_other_seed_other_weights(tiny_editor_dir, tmp_path):
    again = build_tiny_editor(tmp_path / "again", seed=0)
    other = build_tiny_editor(tmp_path / "other", seed=1)
    assert folder_digest(again) == folder_digest(tiny_editor_dir)
    assert folder_digest(other) != folder_digest(tiny_editor_dir)
    weights = "transformer/diffusion_pytorch_model.safetensors"
    assert (other / weights).read_bytes() != (tiny_editor_dir / weights).read_bytes()
    assert (other / "tokenizer/tokenizer.json").read_bytes() == (
        tiny_editor_dir / "tokenizer/tokenizer.json"
    ).read_bytes()
