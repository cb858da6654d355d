"""The batch the driver hands to the actor pool, and how it is split across workers and micro-batches."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from easyr1.core.types import PolicyPrompt


@dataclass
class PolicyBatch:
    """B responses with their prompts and (depending on the call) RL tensors.

    Tensors of shape (B, T) may be wider than the longest response (right padding); only the first
    ``len(responses[i])`` entries of row ``i`` are read.
    """

    prompts: list[PolicyPrompt]
    """One prompt per response (the n samples of a group may share one object; it is encoded once per call)."""
    responses: list[list[int]]
    """Response token ids, stop token included when the response finished."""
    advantages: torch.Tensor | None = None
    """(B,) outcome advantages or (B, T) token advantages — ``update_policy``."""
    old_log_probs: torch.Tensor | None = None
    """(B, T) log-probs under the policy that sampled (``compute_log_probs`` before the update); ``None`` in
    ``update_policy`` means "compute them first" (on-policy)."""
    ref_log_probs: torch.Tensor | None = None
    """(B, T) reference log-probs (``compute_ref_log_probs``); needed when the KL loss is on."""
    valid: torch.Tensor | None = None
    """(B,) bool: samples that take part in the loss (``effective_sample_mask``); ``None`` = all."""

    def __post_init__(self) -> None:
        b = len(self.prompts)
        if len(self.responses) != b:
            raise ValueError(f"PolicyBatch: {b} prompts but {len(self.responses)} responses")
        for name in ("advantages", "old_log_probs", "ref_log_probs", "valid"):
            value = getattr(self, name)
            if value is None:
                continue
            if value.shape[0] != b:
                raise ValueError(f"PolicyBatch.{name}: first dim {value.shape[0]} != batch size {b}")
            if value.dim() == 2 and value.shape[1] < self.max_response_length:
                raise ValueError(
                    f"PolicyBatch.{name}: width {value.shape[1]} < longest response {self.max_response_length}"
                )
        for i, r in enumerate(self.responses):
            if len(r) == 0:
                raise ValueError(f"PolicyBatch: response {i} (prompt {self.prompts[i].id!r}) is empty")

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def max_response_length(self) -> int:
        return max((len(r) for r in self.responses), default=0)

    def select(self, indices: Sequence[int]) -> PolicyBatch:
        idx = list(indices)
        t = torch.as_tensor(idx, dtype=torch.long)

        def pick(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.index_select(0, t)

        return PolicyBatch(
            prompts=[self.prompts[i] for i in idx],
            responses=[list(self.responses[i]) for i in idx],
            advantages=pick(self.advantages),
            old_log_probs=pick(self.old_log_probs),
            ref_log_probs=pick(self.ref_log_probs),
            valid=pick(self.valid),
        )

    def with_fields(self, **fields: Any) -> PolicyBatch:
        return replace(self, **fields)

    def valid_mask(self) -> torch.Tensor:
        return torch.ones(len(self), dtype=torch.bool) if self.valid is None else self.valid.bool()

    def token_tensor(self, x: torch.Tensor, width: int) -> torch.Tensor:
        """``x`` (B, ≥T) cut or zero-padded to (B, width)."""
        if x.shape[1] >= width:
            return x[:, :width]
        return torch.nn.functional.pad(x, (0, width - x.shape[1]))


def shard_batch(batch: PolicyBatch, num_shards: int) -> tuple[list[PolicyBatch], list[int]]:
    """Split into ``num_shards`` contiguous shards of equal size (FSDP ranks must run the same number of steps).

    When B is not divisible, shards are topped up with copies of the last sample marked invalid (they contribute
    nothing to the loss). Returns the shards and how many real samples each holds.
    """
    b = len(batch)
    if b == 0:
        raise ValueError("shard_batch: empty batch")
    per = math.ceil(b / num_shards)
    padded = batch
    if per * num_shards != b:
        extra = per * num_shards - b
        padded = batch.select([*range(b), *([b - 1] * extra)])
        valid = padded.valid_mask().clone()
        valid[b:] = False
        padded = padded.with_fields(valid=valid)
    shards = [padded.select(range(r * per, (r + 1) * per)) for r in range(num_shards)]
    real = [max(0, min(per, b - r * per)) for r in range(num_shards)]
    return shards, real


def fixed_micro_batches(size: int, micro_batch_size: int) -> list[list[int]]:
    """Consecutive index groups of ``micro_batch_size`` (the last may be smaller)."""
    return [list(range(s, min(s + micro_batch_size, size))) for s in range(0, size, micro_batch_size)]


def token_budget_partition(lengths: Sequence[int], budget: int, num_parts: int | None = None) -> list[list[int]]:
    """Pack indices into micro-batches of at most ``budget`` tokens (first-fit decreasing; an item longer than the
    budget travels alone). With ``num_parts`` (≥ the packed count, ≤ ``len(lengths)``) the fullest micro-batches are
    split until there are exactly that many — ranks must run the same number of forward calls. Groups keep
    ascending index order."""
    bins: list[list[int]] = []
    loads: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda j: -lengths[j]):
        for k in range(len(bins)):
            if loads[k] + lengths[i] <= budget:
                bins[k].append(i)
                loads[k] += lengths[i]
                break
        else:
            bins.append([i])
            loads.append(lengths[i])
    if num_parts is not None:
        if not len(bins) <= num_parts <= len(lengths):
            raise ValueError(f"cannot split {len(lengths)} items packed into {len(bins)} groups into {num_parts}")
        while len(bins) < num_parts:
            k = max((k for k in range(len(bins)) if len(bins[k]) > 1), key=lambda k: loads[k])
            halves = balanced_partition([lengths[i] for i in bins[k]], 2)
            parts = [[bins[k][j] for j in half] for half in halves]
            bins[k : k + 1] = parts
            loads[k : k + 1] = [sum(lengths[i] for i in part) for part in parts]
    return [sorted(b) for b in bins]


def balanced_partition(lengths: Sequence[int], num_parts: int) -> list[list[int]]:
    """Split indices into exactly ``num_parts`` non-empty groups with balanced token sums (longest first onto the
    lightest group). Needs ``num_parts ≤ len(lengths)``; groups keep ascending index order."""
    if not 0 < num_parts <= len(lengths):
        raise ValueError(f"cannot split {len(lengths)} items into {num_parts} non-empty parts")
    parts: list[list[int]] = [[] for _ in range(num_parts)]
    loads = [0] * num_parts
    for i in sorted(range(len(lengths)), key=lambda j: -lengths[j]):
        k = min(range(num_parts), key=lambda p: (loads[p], len(parts[p])))
        parts[k].append(i)
        loads[k] += max(1, lengths[i])
    return [sorted(p) for p in parts]


def encode_responses(tokenizer: Any, texts: Sequence[str], *, add_stop: bool = True) -> list[list[int]]:
    """Token ids of response texts (e.g. SFT demonstrations), each followed by ``<|im_end|>`` when ``add_stop``."""
    stop = tokenizer.convert_tokens_to_ids("<|im_end|>")
    out = []
    for text in texts:
        ids = list(tokenizer(text, add_special_tokens=False).input_ids)
        if add_stop:
            ids.append(int(stop))
        out.append(ids)
    return out
