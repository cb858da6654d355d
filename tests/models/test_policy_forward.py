"""Processor → generate → training forward: vision tokens never generated, log-probs agree with generation."""

from __future__ import annotations

import torch

from easyr1.models.forward import response_log_probs
from easyr1.models.generation import generate_sequences
from easyr1.models.inputs import PolicyInputs, collate, encode_prompt, encode_prompts
from easyr1.models.loading import vision_token_ids
from easyr1.rollout.probe import probe_image, probe_prompt


def _generate(tiny_policy, prompts, n=2, max_new_tokens=24, seed=0):
    proc = tiny_policy.processor
    encoded = [e for e in encode_prompts(proc, prompts) for _ in range(n)]
    gens = generate_sequences(tiny_policy.model, proc.tokenizer, encoded, max_new_tokens=max_new_tokens, seed=seed)
    return encoded, gens


def test_two_image_prompt_has_vision_placeholders(tiny_policy) -> None:
    enc = encode_prompt(tiny_policy.processor, probe_prompt(0))
    image_id = tiny_policy.model.config.image_token_id
    # A 64×64 image is 4 merged vision tokens with the tiny pixel limits; two images → 8.
    assert int((enc.input_ids == image_id).sum()) == 8
    assert int(enc.mm_token_type_ids.sum()) == 8
    assert enc.vision["image_grid_thw"].shape == (2, 3)


def test_generation_never_emits_vision_tokens(tiny_policy) -> None:
    _, gens = _generate(tiny_policy, [probe_prompt(0), probe_prompt(1)], n=4, max_new_tokens=32)
    banned = set(vision_token_ids(tiny_policy.processor.tokenizer))
    assert len(gens) == 8
    for g in gens:
        assert g.token_ids and not banned & set(g.token_ids)
        assert len(g.logprobs) == len(g.token_ids)
        assert g.finish_reason in ("stop", "length")


def test_training_forward_matches_generation_log_probs(tiny_policy) -> None:
    # Different image sizes in one batch: different prompt lengths (left padding) and M-RoPE grids.
    prompts = [probe_prompt(0), probe_prompt(1, size=96), probe_prompt(2)]
    prompts[2].images = [probe_image(7, 64).resize((64, 128)), probe_image(8)]
    encoded, gens = _generate(tiny_policy, prompts, n=2)
    batch = collate(encoded, [g.token_ids for g in gens], pad_token_id=tiny_policy.processor.tokenizer.pad_token_id)
    with torch.no_grad():
        logp, entropy = response_log_probs(tiny_policy.model, batch, with_entropy=True)
    expected = torch.zeros_like(logp)
    for i, g in enumerate(gens):
        expected[i, : len(g.logprobs)] = torch.tensor(g.logprobs)
    mask = batch.response_mask.bool()
    assert (logp - expected)[mask].abs().max().item() <= 1e-4
    assert entropy is not None and bool((entropy[mask] > 0).all())
    # The processor's mm_token_type_ids are what makes them agree (M-RoPE positions of the images).
    without = {k: v for k, v in batch.model_inputs.items() if k != "mm_token_type_ids"}
    with torch.no_grad():
        off, _ = response_log_probs(
            tiny_policy.model, PolicyInputs(without, batch.response_ids, batch.response_mask, batch.prompt_length)
        )
    assert (off - expected)[mask].abs().max().item() > 1e-4


def test_seeded_generation_repeats(tiny_policy) -> None:
    _, a = _generate(tiny_policy, [probe_prompt(0)], n=3, seed=5)
    _, b = _generate(tiny_policy, [probe_prompt(0)], n=3, seed=5)
    _, c = _generate(tiny_policy, [probe_prompt(0)], n=3, seed=6)
    assert [g.token_ids for g in a] == [g.token_ids for g in b]
    assert [g.token_ids for g in a] != [g.token_ids for g in c]


def test_collate_layout(tiny_policy) -> None:
    proc = tiny_policy.processor
    enc = encode_prompts(proc, [probe_prompt(0), probe_prompt(1, size=96)])
    pad = proc.tokenizer.pad_token_id
    batch = collate(enc, [[5, 6, 7], [8]], pad_token_id=pad, response_length=4)
    p = batch.prompt_length
    assert p == max(len(e) for e in enc)
    ids, att = batch.model_inputs["input_ids"], batch.model_inputs["attention_mask"]
    assert ids.shape == (2, p + 4)
    assert ids[0, p : p + 3].tolist() == [5, 6, 7] and ids[1, p].item() == 8
    assert batch.response_mask.tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]
    assert att[1, : p - len(enc[1])].sum() == 0 and att[1, p - len(enc[1]) : p + 1].all()
    assert batch.model_inputs["mm_token_type_ids"][:, p:].sum() == 0
    assert batch.model_inputs["pixel_values"].shape[0] == sum(e.vision["pixel_values"].shape[0] for e in enc)
