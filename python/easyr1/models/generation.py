"""Sampling responses with transformers ``generate``, returning token ids and per-token log-probs.

The log-probs are those of the policy itself (raw logits, no temperature/top-p/top-k, no suppression), the same
quantity :func:`easyr1.models.forward.response_log_probs` computes with ``temperature=1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .inputs import EncodedPrompt, collate
from .loading import stop_token_ids


@dataclass
class GeneratedSequence:
    token_ids: list[int]
    """Response tokens up to and including the first stop token (or ``max_new_tokens`` tokens)."""
    logprobs: list[float]
    finish_reason: str
    """``stop`` or ``length``."""


@torch.no_grad()
def generate_sequences(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[EncodedPrompt],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = -1,
    seed: int | None = None,
    device: str | torch.device = "cpu",
) -> list[GeneratedSequence]:
    """One sampled response per entry of ``prompts`` (repeat a prompt to get n samples), in one ``generate`` call.

    ``temperature == 0`` means greedy. ``seed`` seeds torch's global generator first (same inputs, same batch →
    same samples).
    """
    if seed is not None:
        torch.manual_seed(seed)
    pad_id = tokenizer.pad_token_id
    batch = collate(prompts, None, pad_token_id=pad_id).to(device)
    inputs = batch.prompt_only()
    greedy = temperature <= 0
    gen_kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": not greedy,
        "output_logits": True,
        "return_dict_in_generate": True,
        "use_cache": True,
    }
    if not greedy:
        gen_kwargs.update(temperature=temperature, top_p=top_p, top_k=top_k if top_k > 0 else 0)
    was_training = model.training
    model.eval()
    try:
        out = model.generate(**inputs, **gen_kwargs)
    finally:
        model.train(was_training)
    p = batch.prompt_length
    new_tokens = out.sequences[:, p:].cpu()
    if out.logits:
        logits = torch.stack(out.logits, dim=1).float()
        logps = torch.log_softmax(logits, dim=-1).gather(-1, new_tokens[:, : logits.shape[1], None].to(logits.device))
        logps = logps.squeeze(-1).cpu()
    else:
        logps = torch.zeros_like(new_tokens, dtype=torch.float32)
    stops = set(stop_token_ids(tokenizer))
    results = []
    for row, lp in zip(new_tokens.tolist(), logps.tolist(), strict=True):
        end, reason = len(row), "length"
        for j, tok in enumerate(row):
            if tok in stops:
                end, reason = j + 1, "stop"
                break
        results.append(GeneratedSequence(row[:end], lp[:end], reason))
    return results
