"""The tiny policy: offline build, round trip through the production loader, determinism, CLI."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

from easyr1.models.corpus import QWEN_SPECIAL_TOKENS
from easyr1.models.loading import PolicyLoadError, is_gradient_checkpointing, load_policy, read_model_type


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_build_writes_a_hugging_face_folder(tiny_policy_dir: Path, tiny_policy) -> None:
    from transformers import AutoConfig, AutoProcessor, Qwen2_5_VLForConditionalGeneration

    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json", "chat_template.jinja"):
        assert (tiny_policy_dir / name).is_file(), name
    assert AutoConfig.from_pretrained(tiny_policy_dir).model_type == "qwen2_5_vl"
    processor = AutoProcessor.from_pretrained(tiny_policy_dir)
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    model = tiny_policy.model
    assert isinstance(model, Qwen2_5_VLForConditionalGeneration)
    assert sum(p.numel() for p in model.parameters()) < 20_000_000
    tok = tiny_policy.processor.tokenizer
    for special in QWEN_SPECIAL_TOKENS:
        assert tok.convert_tokens_to_ids(special) is not None
    assert model.config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert tok.padding_side == "left"
    assert tok.eos_token == "<|im_end|>"


def test_tokenizer_covers_the_tag_vocabulary(tiny_policy) -> None:
    tok = tiny_policy.processor.tokenizer
    text = (
        "<CoT>The shadow falls on the wrong side of the tree.</CoT>\n<Re_edit>Move the red ball to the left.</Re_edit>"
    )
    ids = tok(text).input_ids
    assert tok.decode(ids) == text
    assert len(ids) < len(text) / 3, "the corpus should have taught merges for the prompt vocabulary"
    # Anything else still round-trips (byte level).
    odd = "Zürich ☀ 42%"
    assert tok.decode(tok(odd).input_ids) == odd


def test_loaded_weights_equal_saved_weights(tmp_path: Path, tiny_policy_dir: Path, tiny_policy) -> None:
    from safetensors.torch import load_file

    # save → load → save writes the same tensors (transformers maps checkpoint keys both ways).
    tiny_policy.model.save_pretrained(tmp_path)
    saved = load_file(tiny_policy_dir / "model.safetensors")
    resaved = load_file(tmp_path / "model.safetensors")
    assert set(saved) == set(resaved)
    for key, value in saved.items():
        torch.testing.assert_close(resaved[key], value, rtol=0, atol=0)


def test_generation_config_suppresses_vision_tokens(tiny_policy) -> None:
    gen = tiny_policy.model.generation_config
    tok = tiny_policy.processor.tokenizer
    vision = {tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>")}
    assert vision <= set(gen.suppress_tokens)
    assert tok.convert_tokens_to_ids("<|im_end|>") in gen.eos_token_id
    assert gen.pad_token_id == tok.pad_token_id


def test_build_is_deterministic_per_seed(tmp_path: Path, tiny_policy_dir: Path) -> None:
    from easyr1.models.tiny import build_tiny_policy

    again = build_tiny_policy(tmp_path / "same", seed=0)
    other = build_tiny_policy(tmp_path / "other", seed=1)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert _digest(again / name) == _digest(tiny_policy_dir / name), name
    assert _digest(other / "model.safetensors") != _digest(tiny_policy_dir / "model.safetensors")
    assert _digest(other / "tokenizer.json") == _digest(tiny_policy_dir / "tokenizer.json")


def test_load_options_freeze_and_checkpointing(tiny_policy_dir: Path) -> None:
    loaded = load_policy(tiny_policy_dir, freeze_vision_tower=True, gradient_checkpointing=True, dtype="bfloat16")
    model = loaded.model
    assert loaded.dtype == torch.bfloat16 and next(model.parameters()).dtype == torch.bfloat16
    assert loaded.attn_implementation == "sdpa"
    visual = model.model.visual
    assert not any(p.requires_grad for p in visual.parameters())
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("model.visual"))
    assert is_gradient_checkpointing(model)


def test_clear_errors(tmp_path: Path, tiny_policy_dir: Path) -> None:
    with pytest.raises(PolicyLoadError, match="does not exist"):
        load_policy(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PolicyLoadError, match=r"no config\.json"):
        load_policy(tmp_path / "empty")
    text_only = tmp_path / "text_only"
    text_only.mkdir()
    (text_only / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    with pytest.raises(PolicyLoadError, match="not a supported vision-language"):
        read_model_type(text_only)
    # A processor from one folder with a model whose image token id differs.
    mismatched = tmp_path / "mismatched"
    mismatched.mkdir()
    for f in tiny_policy_dir.iterdir():
        (mismatched / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((mismatched / "config.json").read_text())
    cfg["image_token_id"] = 3
    (mismatched / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(PolicyLoadError, match="mismatch"):
        load_policy(mismatched)


def test_make_tiny_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from easyr1.models.tiny import make_tiny_command

    assert make_tiny_command(argparse.Namespace(out=str(tmp_path / "a"), seed=3, skip_editor=True)) == 0
    assert (tmp_path / "a" / "policy" / "model.safetensors").is_file()
    assert not (tmp_path / "a" / "editor").exists()
    # Without the editor module the policy is still built and the editor part fails loudly.
    monkeypatch.setitem(sys.modules, "easyr1.models.tiny_editor", None)
    assert make_tiny_command(argparse.Namespace(out=str(tmp_path / "b"), seed=3, skip_editor=False)) == 1
    assert (tmp_path / "b" / "policy" / "model.safetensors").is_file()
    assert "editor" in capsys.readouterr().out
