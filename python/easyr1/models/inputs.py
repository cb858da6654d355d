"""Turning policy prompts (and responses) into model inputs.

Layout of a batch (verl's): every prompt is left-padded to the longest prompt ``P``, every response right-padded
to the longest response ``T``; row ``i`` is ``[pad… prompt_i | response_i …pad]``. Generation uses the prompt part
only; the training forward uses both, so response token ``j`` sits at position ``P + j`` and is predicted by the
logits at ``P + j - 1``.

Each prompt is run through the processor once (:func:`encode_prompt`); batches are assembled from the encodings
(:func:`collate`), so the n samples of a group and repeated micro-batches do not re-process images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from easyr1.core.types import PolicyPrompt

# Per-token processor outputs (padded with the prompt); everything else (pixel_values, image_grid_thw, …) is
# per-image and concatenated along dim 0 in batch order.
_TOKEN_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids")


@dataclass
class EncodedPrompt:
    """One prompt after the chat template and the processor (unpadded, batch dim removed)."""

    input_ids: torch.Tensor
    """(P,) prompt token ids, vision placeholders expanded."""
    mm_token_type_ids: torch.Tensor
    """(P,) 0 text, 1 image, 2 video — what the model needs for its M-RoPE positions."""
    vision: dict[str, torch.Tensor] = field(default_factory=dict)
    """Per-image tensors (``pixel_values``, ``image_grid_thw``, …), concatenated along dim 0 when batched."""

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass
class PolicyInputs:
    """A padded batch ready for the model (see the module docstring for the layout)."""

    model_inputs: dict[str, torch.Tensor]
    """``input_ids``, ``attention_mask``, ``mm_token_type_ids`` (B, P+T) and the vision tensors."""
    response_ids: torch.Tensor
    """(B, T) response token ids, right-padded with the pad id (T may be 0 for generation)."""
    response_mask: torch.Tensor
    """(B, T) 1 on response tokens (EOS included), 0 on padding."""
    prompt_length: int
    """P: the padded prompt length."""

    @property
    def batch_size(self) -> int:
        return int(self.response_ids.shape[0])

    def to(self, device: torch.device | str) -> PolicyInputs:
        return PolicyInputs(
            {k: v.to(device) for k, v in self.model_inputs.items()},
            self.response_ids.to(device),
            self.response_mask.to(device),
            self.prompt_length,
        )

    def prompt_only(self) -> dict[str, torch.Tensor]:
        """Model inputs of the prompt part (for ``generate``)."""
        p = self.prompt_length
        return {k: (v[:, :p] if k in _TOKEN_KEYS else v) for k, v in self.model_inputs.items()}


def prompt_text(processor: Any, prompt: PolicyPrompt) -> str:
    """The chat-templated prompt text ending with the assistant generation prompt."""
    return processor.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)


def count_image_entries(messages: Sequence[dict[str, Any]]) -> int:
    n = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            n += sum(1 for c in content if isinstance(c, dict) and (c.get("type") == "image" or "image" in c))
    return n


def encode_prompt(processor: Any, prompt: PolicyPrompt) -> EncodedPrompt:
    """Chat template + processor for one prompt. Raises ``ValueError`` naming the prompt when its messages and
    images disagree."""
    n_entries = count_image_entries(prompt.messages)
    if n_entries != len(prompt.images):
        raise ValueError(
            f"prompt {prompt.id!r}: messages reference {n_entries} images but {len(prompt.images)} were given"
        )
    text = prompt_text(processor, prompt)
    out = processor(text=[text], images=list(prompt.images) or None, return_tensors="pt")
    if "mm_token_type_ids" in out:
        mm = out["mm_token_type_ids"][0].long()
    else:
        mm = torch.zeros_like(out["input_ids"][0])
    vision = {k: v for k, v in out.items() if k not in _TOKEN_KEYS and isinstance(v, torch.Tensor)}
    return EncodedPrompt(input_ids=out["input_ids"][0].long(), mm_token_type_ids=mm, vision=vision)


def encode_prompts(processor: Any, prompts: Sequence[PolicyPrompt]) -> list[EncodedPrompt]:
    return [encode_prompt(processor, p) for p in prompts]


def collate(
    prompts: Sequence[EncodedPrompt],
    responses: Sequence[Sequence[int]] | None,
    *,
    pad_token_id: int,
    response_length: int | None = None,
) -> PolicyInputs:
    """Pad prompts left and responses right into one :class:`PolicyInputs`.

    ``responses`` is one token-id list per prompt (``None`` for generation). ``response_length`` pads (never
    truncates) responses to a fixed T, so micro-batches can share a shape.
    """
    b = len(prompts)
    if b == 0:
        raise ValueError("collate: empty batch")
    responses = responses if responses is not None else [[] for _ in range(b)]
    if len(responses) != b:
        raise ValueError(f"collate: {b} prompts but {len(responses)} responses")
    p = max(len(e) for e in prompts)
    t = max((len(r) for r in responses), default=0)
    if response_length is not None:
        if response_length < t:
            raise ValueError(f"collate: a response has {t} tokens, more than response_length={response_length}")
        t = response_length
    input_ids = torch.full((b, p + t), pad_token_id, dtype=torch.long)
    attention = torch.zeros((b, p + t), dtype=torch.long)
    mm_types = torch.zeros((b, p + t), dtype=torch.long)
    response_ids = torch.full((b, t), pad_token_id, dtype=torch.long)
    response_mask = torch.zeros((b, t), dtype=torch.long)
    for i, (enc, resp) in enumerate(zip(prompts, responses, strict=True)):
        n = len(enc)
        input_ids[i, p - n : p] = enc.input_ids
        attention[i, p - n : p] = 1
        mm_types[i, p - n : p] = enc.mm_token_type_ids
        if len(resp):
            r = torch.as_tensor(list(resp), dtype=torch.long)
            input_ids[i, p : p + len(r)] = r
            attention[i, p : p + len(r)] = 1
            response_ids[i, : len(r)] = r
            response_mask[i, : len(r)] = 1
    model_inputs: dict[str, torch.Tensor] = {
        "input_ids": input_ids,
        "attention_mask": attention,
        "mm_token_type_ids": mm_types,
    }
    keys = sorted({k for e in prompts for k in e.vision})
    for key in keys:
        parts = [e.vision[key] for e in prompts if key in e.vision]
        if len(parts) != b:
            raise ValueError(f"collate: vision input {key!r} present in some prompts and missing in others")
        model_inputs[key] = torch.cat(parts, dim=0)
    return PolicyInputs(model_inputs, response_ids, response_mask, p)
