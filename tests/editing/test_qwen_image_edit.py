"""QwenImageEditEditor on the tiny pipeline: every setting reaches the pipeline, CFG really runs, seeds are per
item, outputs have the target size, broken outputs and errors become failures with reasons."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from easyr1.core.types import EditRequest
from easyr1.editing.factory import build_editor
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


# --- M-RoPE positions of the text encoder (issue 16, defect 3) -------------------------------------------------


def reference_mrope_positions(input_ids, attention_mask, grid_thw, image_token_id, merge) -> torch.Tensor:
    """3-D positions written out from the Qwen2.5-VL scheme (independent of transformers' ``get_rope_index``): text
    tokens advance all three axes together; an image's tokens sit at ``start + (t, row, col)`` of its merged grid;
    text after an image resumes at one past the largest position used so far. Padding gets position 1."""
    batch, length = input_ids.shape
    positions = torch.ones(3, batch, length, dtype=torch.long)
    images = iter(grid_thw.tolist())
    for b in range(batch):
        valid = attention_mask[b].nonzero().flatten().tolist()
        ids = input_ids[b, valid].tolist()
        out: list[list[int]] = []
        nxt = 0
        i = 0
        while i < len(ids):
            if ids[i] != image_token_id:
                out.append([nxt] * 3)
                nxt += 1
                i += 1
                continue
            t, h, w = next(images)
            h, w = h // merge, w // merge
            grid = [[nxt + ti, nxt + hi, nxt + wi] for ti in range(t) for hi in range(h) for wi in range(w)]
            out.extend(grid)
            nxt = max(max(p) for p in grid) + 1
            i += len(grid)
        positions[:, b, valid] = torch.tensor(out, dtype=torch.long).T
    return positions


def reference_prompt_embeds(pipeline, prompts, image) -> list[torch.Tensor]:
    """What the pipeline's prompt encoding must give: its template, processor and prefix drop, with the encoder run
    at explicit 3-D positions (explicit ``position_ids`` make the model ignore ``mm_token_type_ids``)."""
    template = pipeline.prompt_template_encode
    texts = [template.format(p) for p in prompts]
    inputs = pipeline.processor(text=texts, images=image, padding=True, return_tensors="pt")
    encoder = pipeline.text_encoder
    positions = reference_mrope_positions(
        inputs["input_ids"],
        inputs["attention_mask"],
        inputs["image_grid_thw"],
        encoder.config.image_token_id,
        encoder.config.vision_config.spatial_merge_size,
    )
    with torch.no_grad():
        out = encoder(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            pixel_values=inputs["pixel_values"],
            image_grid_thw=inputs["image_grid_thw"],
            position_ids=positions,
            output_hidden_states=True,
        )
    hidden = out.hidden_states[-1]
    start = pipeline.prompt_template_encode_start_idx
    return [hidden[b, inputs["attention_mask"][b].bool()][start:] for b in range(len(prompts))]


def pipeline_prompt_embeds(pipeline, prompts, images) -> list[torch.Tensor]:
    with torch.no_grad():
        embeds, mask = pipeline.encode_prompt(prompts, images, device=torch.device("cpu"))
    if mask is None:
        mask = torch.ones(embeds.shape[:2], dtype=torch.long)
    return [embeds[b, mask[b].bool()] for b in range(len(prompts))]


def max_difference(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    assert [x.shape for x in a] == [y.shape for y in b]
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


PROMPTS = ["Add a red ball", "Remove the dark tree on the left side of the ground"]  # two lengths: padding


def test_text_encoder_gets_3d_positions(editor, make_image):
    pipeline = editor.pipeline
    images = [make_image(0, 112, 112), make_image(1, 112, 112)]  # 8×8 patches → a 4×4 merged grid each
    seen: list[dict] = []
    probe = pipeline.text_encoder.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(dict(kwargs)), with_kwargs=True
    )
    try:
        fixed = pipeline_prompt_embeds(pipeline, PROMPTS, images)
    finally:
        probe.remove()
    assert len(seen) == 1 and seen[0].get("mm_token_type_ids") is not None
    types = seen[0]["mm_token_type_ids"]
    image_token = pipeline.text_encoder.config.image_token_id
    assert torch.equal(types.bool(), seen[0]["input_ids"] == image_token)
    assert int(types.sum()) == 2 * 16

    reference = reference_prompt_embeds(pipeline, PROMPTS, images)
    assert max_difference(fixed, reference) < 1e-5

    # What diffusers 0.42 computes on its own (1-D positions for the image tokens) is measurably different.
    editor.pipeline.text_encoder._easyr1_mrope_hook.remove()
    unfixed = pipeline_prompt_embeds(pipeline, PROMPTS, images)
    assert max_difference(unfixed, reference) > 1e-3


def test_mrope_hook_is_a_no_op_when_the_caller_passes_token_types(editor, make_image):
    from easyr1.editing.text_positions import install_mrope_positions

    pipeline = editor.pipeline
    assert install_mrope_positions(pipeline)  # idempotent: already installed
    assert len(pipeline.text_encoder._forward_pre_hooks) == 1
    inputs = pipeline.processor(
        text=[pipeline.prompt_template_encode.format("x")], images=make_image(2, 112, 112), return_tensors="pt"
    )
    explicit = torch.zeros_like(inputs["input_ids"], dtype=torch.int32)  # "no image tokens": 1-D positions
    seen = []
    probe = pipeline.text_encoder.register_forward_hook(
        lambda module, args, kwargs, out: seen.append(kwargs["mm_token_type_ids"]), with_kwargs=True
    )
    try:
        with torch.no_grad():
            pipeline.text_encoder(**{**inputs, "mm_token_type_ids": explicit})
    finally:
        probe.remove()
    assert seen[0] is explicit


def test_plus_pipeline_encoder_gets_3d_positions(tiny_editor_dir, tiny_cfg, tmp_path, make_image):
    plus_dir = tmp_path / "plus"
    shutil.copytree(tiny_editor_dir, plus_dir)
    index = json.loads((plus_dir / "model_index.json").read_text())
    index["_class_name"] = "QwenImageEditPlusPipeline"
    (plus_dir / "model_index.json").write_text(json.dumps(index))
    editor = QwenImageEditEditor.from_config(dataclasses.replace(tiny_cfg, model_path=str(plus_dir)))
    seen = []
    editor.pipeline.text_encoder.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs.get("mm_token_type_ids")), with_kwargs=True
    )
    assert editor.edit(requests_for(make_image, 1))[0].ok
    assert len(seen) == 2 and all(t is not None and int(t.sum()) > 0 for t in seen)  # prompt and negative prompt
