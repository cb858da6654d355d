"""The training forward: per-token log-probs (and entropy) of responses given prompt + images.

The model computes its own multimodal (M-RoPE) positions from ``input_ids``, ``mm_token_type_ids`` and
``image_grid_thw`` exactly as in generation, so these log-probs equal the log-probs of the generation that produced
the response (tested to 1e-4 on the tiny Qwen2.5-VL and Qwen3-VL policies). What the forward passes besides the
collated batch is the family adapter's business (``PolicyFamily.forward_kwargs`` in ``easyr1.models.families``).
Only the logits of the response positions are materialised (``logits_to_keep``); log-probs and entropy come from
``easyr1.algorithms`` (float32, chunked, checkpointed).
"""

from __future__ import annotations

from typing import Any

import torch

from easyr1.algorithms import entropy_from_logits, logprobs_from_logits

from .families import family_of
from .inputs import PolicyInputs


def response_logits(model: Any, inputs: PolicyInputs) -> torch.Tensor:
    """(B, T, V) logits predicting each response token (in the model's dtype)."""
    t = inputs.response_ids.shape[1]
    if t == 0:
        raise ValueError("response_logits: the batch has no response tokens")
    kwargs = family_of(model).forward_kwargs(inputs.model_inputs)
    out = model(**kwargs, use_cache=False, logits_to_keep=t + 1)
    return out.logits[:, :-1, :]


def response_log_probs(
    model: Any,
    inputs: PolicyInputs,
    *,
    temperature: float = 1.0,
    with_entropy: bool = False,
    entropy_grad: bool = True,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs (B, T) of ``inputs.response_ids`` and, if asked, per-token entropy (B, T).

    Values on padding positions are meaningless: multiply by ``inputs.response_mask``. Gradients flow when the
    caller has them enabled; ``entropy_grad=False`` computes the entropy as a detached metric only.
    """
    logits = response_logits(model, inputs)
    if temperature != 1.0:
        logits = logits / temperature
    logp = logprobs_from_logits(logits, inputs.response_ids, chunk_size)
    entropy = None
    if with_entropy:
        if entropy_grad:
            entropy = entropy_from_logits(logits, chunk_size)
        else:
            with torch.no_grad():
                entropy = entropy_from_logits(logits.detach(), chunk_size)
    return logp, entropy
