"""The per-family adapters: one registry entry per ``model_type``, the config choice ``model_family`` validated
against it, the memory planner's Qwen3-VL formulas equal to the real module's parameter counts, and
``easyr1 make-tiny --family``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from easyr1.config import load_config
from easyr1.config.base import ConfigValidationError
from easyr1.core.registries import POLICY_FAMILIES
from easyr1.memory_plan import policy_shape
from easyr1.memory_plan.shapes import POLICY_TYPES, known_models
from easyr1.models.families import family_of, get_family, tiny_family_names
from easyr1.models.families.base import TinyUnsupported


def test_every_registered_family_loads_its_transformers_class():
    for name in POLICY_FAMILIES.names():
        family = get_family(name)
        assert family.model_type == name
        assert family.model_class().__name__ == POLICY_FAMILIES.facts(name).model_class
    assert tiny_family_names() == ["qwen2_5_vl", "qwen3_vl"]
    assert get_family("qwen2_5_vl").vision_unit == 28 and get_family("qwen3_vl").vision_unit == 32
    with pytest.raises(ValueError, match=r"worker\.actor\.model\.model_family='llama'"):
        get_family("llama")
    with pytest.raises(TinyUnsupported):
        get_family("qwen3_vl_moe").tiny_config(None, None)


def test_family_of_a_loaded_model(tiny_policy):
    assert family_of(tiny_policy.model) is get_family("qwen2_5_vl")
    with pytest.raises(ValueError, match=r"no config\.model_type"):
        family_of(object())


@pytest.mark.parametrize("value", ["auto", "qwen2_5_vl", "qwen3_vl"])
def test_model_family_choices(repo_root, value):
    cfg = load_config(repo_root / "examples" / "sandbox.yaml", [f"worker.actor.model.model_family={value}"])
    assert cfg.worker.actor.model.model_family == value


def test_unknown_model_family_is_refused(repo_root):
    with pytest.raises(ConfigValidationError, match="model_family"):
        load_config(repo_root / "examples" / "sandbox.yaml", ["worker.actor.model.model_family=llama"])


def _meta_numel(config: dict):
    import torch

    from easyr1.models.loading import decoder_layers, vision_tower

    family = get_family(config["model_type"])
    kwargs = {k: v for k, v in config.items() if k not in ("model_type", "architectures", "transformers_version")}
    config_cls = type(family.model_class().config_class())
    with torch.device("meta"):
        model = family.model_class()._from_config(config_cls(**kwargs))
    layers, vision = decoder_layers(model), vision_tower(model)

    def numel(m):
        return sum(p.numel() for p in m.parameters())

    return numel(model), numel(layers[0]), numel(vision.blocks[0]), numel(vision)


def test_qwen3_vl_parameter_counts_equal_the_model(tmp_path):
    from easyr1.models.tiny import build_tiny_policy

    assert "qwen3_vl" in POLICY_TYPES
    tiny = build_tiny_policy(tmp_path / "policy", seed=0, family="qwen3_vl")
    for source, config in (
        ("Qwen/Qwen3-VL-8B-Instruct", known_models()["Qwen/Qwen3-VL-8B-Instruct"]["config"]),
        (tiny, json.loads((tiny / "config.json").read_text())),
    ):
        shape = policy_shape(source)
        total, layer, block, vision = _meta_numel(config)
        assert (shape.total_params, shape.layer_params, shape.vision_block_params, shape.vision_params) == (
            total,
            layer,
            block,
            vision,
        )
        assert shape.image_tokens(64 * 64) == 4  # 32-pixel merged tokens
    assert policy_shape("Qwen/Qwen3-VL-8B-Instruct").total_params == 8_767_123_696  # the model card's 8.77 B


def test_make_tiny_family_flag(tmp_path):
    args = [sys.executable, "-m", "easyr1", "make-tiny", "--out", str(tmp_path), "--skip-editor"]
    done = subprocess.run([*args, "--family", "qwen3_vl"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "policy" / "config.json").read_text())["model_type"] == "qwen3_vl"
    refused = subprocess.run([*args, "--family", "qwen3_vl_moe"], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "qwen2_5_vl, qwen3_vl" in refused.stdout


def test_qwen3_vl_production_example_loads_and_fits(repo_root):
    from easyr1.memory_plan import plan

    cfg = load_config(repo_root / "examples" / "qwen3_vl.yaml")
    assert cfg.worker.actor.model.model_family == "qwen3_vl"
    result = plan(cfg, policy_model="Qwen/Qwen3-VL-8B-Instruct", editor_model="Qwen/Qwen-Image-Edit")
    assert {v.estimate.pool: v.status for v in result.verdicts} == {
        "actor": "fits",
        "rollout": "fits",
        "editor": "fits",
    }
    # with fp32 AdamW states the actor's optimizer step leaves under 5 % of the GPU
    fp32 = load_config(repo_root / "examples" / "qwen3_vl.yaml", ["worker.actor.optim.strategy=adamw"])
    before = plan(fp32, policy_model="Qwen/Qwen3-VL-8B-Instruct", editor_model="Qwen/Qwen-Image-Edit")
    assert before.verdicts[0].status == "tight"


def _width_step_angle(config) -> float:
    """The largest rotary angle between two image tokens one step apart in width only (language model)."""
    import torch

    family = get_family(config.model_type)
    model = family.model_class()(config)
    rotary = model.model.language_model.rotary_emb
    pos = torch.tensor([[[5, 5]], [[5, 5]], [[5, 6]]])  # (t, h, w) of two tokens: w differs by one
    cos, sin = rotary(torch.zeros(1, 2, config.text_config.hidden_size), pos)
    angle = torch.atan2(sin[0], cos[0])
    return float((angle[1] - angle[0]).abs().max())


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_mrope_section_knob(family):
    import dataclasses

    from easyr1.models.tiny import SANDBOX_POLICY_SPEC, build_tiny_tokenizer, tiny_policy_config

    tok = build_tiny_tokenizer(SANDBOX_POLICY_SPEC)
    default = tiny_policy_config(tok, SANDBOX_POLICY_SPEC, family)
    wide = tiny_policy_config(tok, dataclasses.replace(SANDBOX_POLICY_SPEC, mrope_section=(1, 1, 14)), family)
    assert wide.text_config.rope_parameters["mrope_section"] == [1, 1, 14]
    if family == "qwen2_5_vl":
        # the default split is unchanged, and in it the width block holds only the lowest frequencies
        assert default.text_config.rope_parameters["mrope_section"] == [4, 6, 6]
        assert _width_step_angle(default) < 0.01
        assert _width_step_angle(wide) > 0.3
    with pytest.raises(ValueError, match="adding up to 16"):
        tiny_policy_config(tok, dataclasses.replace(SANDBOX_POLICY_SPEC, mrope_section=(2, 2, 2)), family)


def test_vision_init_knobs(tmp_path):
    import dataclasses

    import torch
    from safetensors.torch import load_file

    from easyr1.models.tiny import SANDBOX_POLICY_SPEC, build_tiny_policy

    spec = dataclasses.replace(SANDBOX_POLICY_SPEC, vision_pos_embed_std=0.7, vision_merger_scale=0.05)
    out = build_tiny_policy(tmp_path / "q3", seed=0, spec=spec, family="qwen3_vl")
    plain_dir = build_tiny_policy(tmp_path / "plain", seed=0, spec=SANDBOX_POLICY_SPEC, family="qwen3_vl")
    plain = load_file(str(plain_dir / "model.safetensors"))
    weights = load_file(str(out / "model.safetensors"))
    pos = next(v for k, v in weights.items() if k.endswith("visual.pos_embed.weight"))
    assert 0.6 < float(pos.std()) < 0.8  # transformers' own init draws it with std 0.02
    # every merger's output layer (the main one and DeepStack's) is scaled, nothing else in the tower
    scaled = [k for k in weights if "merger" in k and k.endswith("linear_fc2.weight")]
    assert len(scaled) == 2
    for key in scaled:
        assert torch.allclose(weights[key], plain[key] * 0.05)
    block = next(k for k in weights if "blocks.0.mlp.linear_fc2.weight" in k)
    assert torch.equal(weights[block], plain[block])
    with pytest.raises(ValueError, match="no learned position embedding"):
        build_tiny_policy(tmp_path / "q25", seed=0, spec=spec, family="qwen2_5_vl")
