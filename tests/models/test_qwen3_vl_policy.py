"""The tiny Qwen3-VL policy: a real Qwen3-VL architecture (patch 16, interleaved M-RoPE, DeepStack) built offline;
the training forward's log-probs equal the generation's; the family adapter picks the right class, processor and
chat template, and a folder of the other family is refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from easyr1.models.families import get_family
from easyr1.models.forward import response_log_probs
from easyr1.models.generation import generate_sequences
from easyr1.models.inputs import PolicyInputs, collate, encode_prompt, encode_prompts
from easyr1.models.loading import PolicyLoadError, load_policy, vision_token_ids
from easyr1.rollout.probe import probe_image, probe_prompt


@pytest.fixture(scope="module")
def qwen3_dir(tmp_path_factory) -> Path:
    from easyr1.models.tiny import build_tiny_policy

    return build_tiny_policy(tmp_path_factory.mktemp("qwen3") / "policy", seed=0, family="qwen3_vl")


@pytest.fixture(scope="module")
def qwen3(qwen3_dir):
    return load_policy(qwen3_dir)


def _generate(policy, prompts, n=2, max_new_tokens=24, seed=0):
    proc = policy.processor
    encoded = [e for e in encode_prompts(proc, prompts) for _ in range(n)]
    gens = generate_sequences(policy.model, proc.tokenizer, encoded, max_new_tokens=max_new_tokens, seed=seed)
    return encoded, gens


def _expected(logp: torch.Tensor, gens) -> torch.Tensor:
    expected = torch.zeros_like(logp)
    for i, g in enumerate(gens):
        expected[i, : len(g.logprobs)] = torch.tensor(g.logprobs)
    return expected


def test_the_folder_is_a_real_qwen3_vl(qwen3_dir, qwen3) -> None:
    from transformers import Qwen3VLForConditionalGeneration, Qwen3VLProcessor

    config = json.loads((qwen3_dir / "config.json").read_text())
    assert config["model_type"] == "qwen3_vl" and config["architectures"] == ["Qwen3VLForConditionalGeneration"]
    rope = config["text_config"]["rope_parameters"]
    assert rope["mrope_interleaved"] is True and sum(rope["mrope_section"]) == config["text_config"]["head_dim"] // 2
    assert config["vision_config"]["patch_size"] == 16 and config["vision_config"]["deepstack_visual_indexes"]
    assert isinstance(qwen3.model, Qwen3VLForConditionalGeneration) and qwen3.family == "qwen3_vl"
    assert isinstance(qwen3.processor, Qwen3VLProcessor)
    assert qwen3.processor.image_processor.patch_size == 16
    assert len(qwen3.model.model.visual.deepstack_merger_list) == len(
        config["vision_config"]["deepstack_visual_indexes"]
    )
    # Qwen3-VL's template has no default system prompt.
    text = qwen3.processor.apply_chat_template(probe_prompt(0).messages, tokenize=False, add_generation_prompt=True)
    assert "You are a helpful assistant" not in text and text.endswith("<|im_start|>assistant\n")


def test_a_64px_image_is_four_32px_vision_tokens(qwen3) -> None:
    enc = encode_prompt(qwen3.processor, probe_prompt(0))
    image_id = qwen3.model.config.image_token_id
    assert int((enc.input_ids == image_id).sum()) == 8  # two 64×64 images, 2×2 merged 32-pixel tokens each
    assert int(enc.mm_token_type_ids.sum()) == 8
    assert enc.vision["image_grid_thw"].tolist() == [[1, 4, 4], [1, 4, 4]]
    assert enc.vision["pixel_values"].shape[1] == 3 * 2 * 16 * 16


def test_same_seed_same_weights(qwen3_dir, tmp_path) -> None:
    from safetensors.torch import load_file

    from easyr1.models.tiny import build_tiny_policy

    again = build_tiny_policy(tmp_path / "again", seed=0, family="qwen3_vl")
    a, b = load_file(qwen3_dir / "model.safetensors"), load_file(again / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_generation_never_emits_vision_tokens(qwen3) -> None:
    _, gens = _generate(qwen3, [probe_prompt(0), probe_prompt(1)], n=3, max_new_tokens=32)
    banned = set(vision_token_ids(qwen3.processor.tokenizer))
    assert len(gens) == 6
    for g in gens:
        assert g.token_ids and not banned & set(g.token_ids)
        assert len(g.logprobs) == len(g.token_ids)


def test_training_forward_matches_generation_log_probs(qwen3) -> None:
    # Different image sizes and aspect ratios: different prompt lengths (left padding) and M-RoPE grids.
    prompts = [probe_prompt(0), probe_prompt(1, size=96), probe_prompt(2)]
    prompts[2].images = [probe_image(7, 64).resize((64, 128)), probe_image(8)]
    encoded, gens = _generate(qwen3, prompts, n=2)
    pad = qwen3.processor.tokenizer.pad_token_id
    batch = collate(encoded, [g.token_ids for g in gens], pad_token_id=pad)
    with torch.no_grad():
        logp, entropy = response_log_probs(qwen3.model, batch, with_entropy=True)
    expected = _expected(logp, gens)
    mask = batch.response_mask.bool()
    assert (logp - expected)[mask].abs().max().item() <= 1e-4
    assert entropy is not None and bool((entropy[mask] > 0).all())
    # The interleaved M-RoPE positions of the images are what makes them agree: 1-D text positions move them,
    # and without mm_token_type_ids Qwen3-VL refuses to guess.
    flat = dict(batch.model_inputs)
    flat["position_ids"] = get_family("qwen3_vl").text_position_ids(flat["attention_mask"])
    with torch.no_grad():
        off = torch.log_softmax(qwen3.model(**flat, use_cache=False).logits[:, batch.prompt_length - 1 : -1], -1)
    off = off.gather(-1, batch.response_ids[..., None]).squeeze(-1)
    assert (off - expected)[mask].abs().max().item() > 1e-4
    without = {k: v for k, v in batch.model_inputs.items() if k != "mm_token_type_ids"}
    with torch.no_grad(), pytest.raises(ValueError, match="mm_token_type_ids"):
        response_log_probs(
            qwen3.model, PolicyInputs(without, batch.response_ids, batch.response_mask, batch.prompt_length)
        )


def test_deepstack_features_reach_the_decoder(qwen3) -> None:
    encoded, gens = _generate(qwen3, [probe_prompt(3)], n=2)
    pad = qwen3.processor.tokenizer.pad_token_id
    batch = collate(encoded, [g.token_ids for g in gens], pad_token_id=pad)
    mergers = qwen3.model.model.visual.deepstack_merger_list
    saved = [m.linear_fc2.bias.detach().clone() for m in mergers]
    with torch.no_grad():
        base, _ = response_log_probs(qwen3.model, batch)
        try:
            for m in mergers:
                m.linear_fc2.bias.add_(1.0)
            moved, _ = response_log_probs(qwen3.model, batch)
        finally:
            for m, b in zip(mergers, saved, strict=True):
                m.linear_fc2.bias.copy_(b)
    mask = batch.response_mask.bool()
    assert (base - moved)[mask].abs().max().item() > 1e-3


def test_text_only_prompts_match_generation(qwen3) -> None:
    from easyr1.core.types import PolicyPrompt

    prompts = [
        PolicyPrompt(id="a", messages=[{"role": "user", "content": "fix the shadow"}], images=[]),
        PolicyPrompt(id="b", messages=[{"role": "user", "content": "make the red box larger please"}], images=[]),
    ]
    encoded, gens = _generate(qwen3, prompts, n=2)
    batch = collate(encoded, [g.token_ids for g in gens], pad_token_id=qwen3.processor.tokenizer.pad_token_id)
    with torch.no_grad():
        logp, _ = response_log_probs(qwen3.model, batch)
    mask = batch.response_mask.bool()
    assert (logp - _expected(logp, gens))[mask].abs().max().item() <= 1e-4


def test_a_named_family_must_match_the_folder(qwen3_dir, tiny_policy_dir) -> None:
    assert load_policy(qwen3_dir, family="qwen3_vl").family == "qwen3_vl"
    with pytest.raises(
        PolicyLoadError, match=r"model_type 'qwen3_vl' but worker.actor.model.model_family='qwen2_5_vl'"
    ):
        load_policy(qwen3_dir, family="qwen2_5_vl")
    with pytest.raises(PolicyLoadError, match="model_family='qwen3_vl'"):
        load_policy(tiny_policy_dir, family="qwen3_vl")
