"""QwenImageEditEditor on the tiny pipeline: every setting reaches the pipeline, CFG really runs, seeds are per
item, outputs have the target size, broken outputs and errors become failures with reasons."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from easyr1.editing.factory import build_editor
from easyr1.editing.protocol import EditRequest
from easyr1.editing.qwen_image_edit import QwenImageEditEditor, pipeline_class_name, template_prefix_tokens


@pytest.fixture
def editor(tiny_cfg) -> QwenImageEditEditor:
    built = build_editor(tiny_cfg)
    assert isinstance(built, QwenImageEditEditor)
    return built


def requests_for(make_image, n, *, seed0=10, size=(64, 64), text="Add a red ball"):
    return [EditRequest(make_image(i, *size), f"{text} {i}", seed0 + i, f"s{i}/0") for i in range(n)]


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.fixture
def call_spy(monkeypatch, editor):
    """Records the keyword arguments of every pipeline call (then runs the real call)."""
    cls = type(editor.pipeline)
    original = cls.__call__
    calls: list[dict] = []

    def spy(self, *args, **kwargs):
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "__call__", spy)
    return calls


def test_true_cfg_settings_reach_the_pipeline_call(editor, call_spy, make_image):
    forward_calls = []
    editor.pipeline.transformer.register_forward_hook(lambda *a: forward_calls.append(1))
    results = editor.edit(requests_for(make_image, 3))
    assert all(r.ok for r in results), [r.reason for r in results]
    assert len(call_spy) == 1
    kwargs = call_spy[0]
    assert kwargs["true_cfg_scale"] == 4.0
    assert kwargs["negative_prompt"] == [" ", " ", " "]
    assert "guidance_scale" not in kwargs
    assert kwargs["num_inference_steps"] == 2
    assert kwargs["prompt"] == ["Add a red ball 0", "Add a red ball 1", "Add a red ball 2"]
    assert [g.initial_seed() for g in kwargs["generator"]] == [10, 11, 12]
    assert (kwargs["width"], kwargs["height"]) == (64, 64)
    # true CFG: a conditional and an unconditional transformer pass per step
    assert len(forward_calls) == 2 * 2


def test_outputs_differ_with_and_without_cfg(tiny_cfg, editor, make_image):
    no_cfg = QwenImageEditEditor.from_config(dataclasses.replace(tiny_cfg, true_cfg_scale=1.0))
    batch = requests_for(make_image, 2)
    with_cfg_images = [r.image for r in editor.edit(batch)]
    without = [r.image for r in no_cfg.edit(batch)]
    for a, b in zip(with_cfg_images, without, strict=True):
        assert np.abs(pixels(a) - pixels(b)).max() > 0
    forward_calls = []
    no_cfg.pipeline.transformer.register_forward_hook(lambda *a: forward_calls.append(1))
    no_cfg.edit(batch[:1])
    assert len(forward_calls) == 2  # one pass per step: CFG off


def test_condition_and_output_at_target_area_not_1024(editor, make_image, monkeypatch):
    seen = []
    original = editor.pipeline.vae.encode

    def encode(x, *args, **kwargs):
        seen.append(tuple(x.shape[-2:]))
        return original(x, *args, **kwargs)

    monkeypatch.setattr(editor.pipeline.vae, "encode", encode)
    results = editor.edit([EditRequest(make_image(0, 128, 64), "Add a cup", 1, "a/0")])
    assert results[0].ok
    assert seen == [(32, 96)]  # the 4096-px condition at 2:1 aspect, not ~1024²
    assert results[0].image.size == (96, 32)
    assert results[0].info["size"] == [96, 32]


def test_seeds_are_per_item_and_independent_of_batching(editor, make_image):
    batch = requests_for(make_image, 3)
    together = editor.edit(batch)
    alone = editor.edit([batch[1]])
    again = editor.edit(batch)
    assert np.abs(pixels(together[1].image) - pixels(alone[0].image)).max() <= 1
    for a, b in zip(together, again, strict=True):
        assert np.array_equal(pixels(a.image), pixels(b.image))
    reseeded = editor.edit([dataclasses.replace(batch[1], seed=999)])
    assert np.abs(pixels(reseeded[0].image) - pixels(together[1].image)).max() > 0
    assert [r.info["seed"] for r in together] == [10, 11, 12]


def test_groups_by_size_and_keeps_order(editor, call_spy, make_image):
    sizes = [(64, 64), (128, 64), (64, 64), (128, 64), (64, 64)]
    batch = [EditRequest(make_image(i, *s), f"edit {i}", i, f"k{i}") for i, s in enumerate(sizes)]
    results = editor.edit(batch)
    assert [r.image.size for r in results] == [(64, 64), (96, 32), (64, 64), (96, 32), (64, 64)]
    assert sorted(len(c["prompt"]) for c in call_spy) == [2, 3]
    assert [r.info["seed"] for r in results] == [0, 1, 2, 3, 4]


def test_batch_size_splits_calls(tiny_cfg, make_image, call_spy):
    small = QwenImageEditEditor.from_config(dataclasses.replace(tiny_cfg, batch_size=2))
    assert [r.ok for r in small.edit(requests_for(make_image, 5))] == [True] * 5
    assert [len(c["prompt"]) for c in call_spy] == [2, 2, 1]


@pytest.mark.parametrize(
    ("decoded", "reason"),
    [(float("nan"), "nan_output"), (-1.0, "blank_output"), (0.0, "constant_output")],
)
def test_broken_outputs_are_failures(editor, make_image, monkeypatch, decoded, reason):
    vae = editor.pipeline.vae

    def decode(latents, return_dict=False):
        b, _, t, h, w = latents.shape
        return (torch.full((b, 3, t, h * 4, w * 4), decoded),)

    monkeypatch.setattr(vae, "decode", decode)
    results = editor.edit(requests_for(make_image, 2))
    assert [(r.ok, r.reason, r.image) for r in results] == [(False, reason, None)] * 2


def test_blank_detection_can_be_turned_off(tiny_cfg, make_image, monkeypatch):
    editor = QwenImageEditEditor.from_config(dataclasses.replace(tiny_cfg, detect_blank_outputs=False))
    monkeypatch.setattr(editor.pipeline.vae, "decode", lambda z, return_dict=False: (torch.zeros(1, 3, 1, 64, 64),))
    assert editor.edit(requests_for(make_image, 1))[0].ok


def test_a_failing_item_fails_alone(editor, make_image, monkeypatch):
    cls = type(editor.pipeline)
    original = cls.__call__

    def flaky(self, *args, **kwargs):
        if any("boom" in p for p in kwargs["prompt"]):
            raise RuntimeError("kaboom")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "__call__", flaky)
    batch = requests_for(make_image, 4)
    batch[2] = dataclasses.replace(batch[2], instruction="boom")
    results = editor.edit(batch)
    assert [r.ok for r in results] == [True, True, False, True]
    assert results[2].reason == "exception" and "kaboom" in results[2].info["error"]
    assert results[2].image is None


def test_template_prefix_is_counted_with_the_checkpoint_tokenizer(editor):
    start = editor.pipeline.prompt_template_encode_start_idx
    assert start == template_prefix_tokens(editor.pipeline)
    tokens = editor.pipeline.tokenizer(editor.pipeline.prompt_template_encode.format("x"))["input_ids"]
    vision_start = editor.pipeline.tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert tokens[start] == vision_start  # the kept part starts at the user turn's image


def test_plus_checkpoint_loads_with_batch_size_one(tiny_editor_dir, tiny_cfg, tmp_path, make_image):
    plus_dir = tmp_path / "plus"
    shutil.copytree(tiny_editor_dir, plus_dir)
    index = json.loads((plus_dir / "model_index.json").read_text())
    index["_class_name"] = "QwenImageEditPlusPipeline"
    (plus_dir / "model_index.json").write_text(json.dumps(index))
    editor = QwenImageEditEditor.from_config(dataclasses.replace(tiny_cfg, model_path=str(plus_dir)))
    assert type(editor.pipeline).__name__ == "QwenImageEditPlusPipeline" and editor.batch_size == 1
    results = editor.edit(requests_for(make_image, 2))
    assert [r.ok for r in results] == [True, True] and results[0].image.size == (64, 64)


def test_bad_model_paths_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        pipeline_class_name(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=r"model_index\.json"):
        pipeline_class_name(tmp_path)
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ValueError, match="StableDiffusionPipeline"):
        pipeline_class_name(tmp_path)
