"""The per-step batch: every sample of a step with what each stage made of it, grouped by prompt.

A :class:`StepBatch` is built from one rollout + scoring pass (:meth:`StepBatch.from_pass`), narrowed to the groups
online filtering keeps (:meth:`select_groups`), joined across refill attempts (:meth:`concat`) and handed to the
update and to the metrics (:mod:`easyr1.trainer.step_metrics`). Validation uses the same object, so a training row
and a validation row are computed by the same code.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from easyr1.config import DIMENSIONS
from easyr1.core.types import EditSample, PolicyPrompt, RolloutOutput
from easyr1.reward.judge.protocol import JudgeResult

from .scoring import ScoredBatch


@dataclass
class StepBatch:
    """N samples in G groups of ``n`` (one group per prompt), aligned index by index."""

    rows: list[EditSample]
    """The data row of each sample (repeated ``n`` times per group)."""
    prompts: list[PolicyPrompt]
    """The policy prompt of each sample (repeated per group)."""
    outputs: list[RolloutOutput]
    group: torch.Tensor
    """(N,) long: the group (prompt) index of each sample, 0..G-1 in order."""
    rewards: torch.Tensor
    """(N,) float64 combined reward 0–10; NaN where masked."""
    valid: torch.Tensor
    """(N,) bool: the sample was scored (not masked by a failure)."""
    format_scores: torch.Tensor
    """(N,) float64 format score 0–5."""
    dimension_scores: dict[str, torch.Tensor]
    """dimension → (N,) float64 judge score, NaN where not judged."""
    reasons: list[str | None]
    """Mask reason per sample, ``None`` when valid."""
    actions: list[str]
    re_edits: list[str | None]
    final_images: list[Image.Image | None]
    judge_results: list[JudgeResult | None]
    versions: torch.Tensor | None = None
    """(N,) long: the policy version (updates applied) of the weights that generated each sample, when known."""
    old_log_probs: torch.Tensor | None = None
    """(N, T) behaviour log-probs the actor computed with the weights that generated the samples (an off-policy
    prefetch); ``None``: the update computes them (on-policy)."""

    # ------------------------------------------------------------------ building
    @classmethod
    def from_pass(
        cls,
        rows: Sequence[EditSample],
        prompts: Sequence[PolicyPrompt],
        outputs: Sequence[RolloutOutput],
        scored: ScoredBatch,
        *,
        version: int | None = None,
        old_log_probs: torch.Tensor | None = None,
    ) -> StepBatch:
        """One rollout + scoring pass of ``rows`` (``len(outputs) / len(rows)`` responses per row, grouped), generated
        with the weights of policy ``version``; ``old_log_probs``: their behaviour log-probs when already known."""
        if not rows or len(outputs) % len(rows):
            raise ValueError(f"{len(outputs)} outputs cannot be grouped over {len(rows)} rows")
        n = len(outputs) // len(rows)
        misplaced = [o.prompt_id for i, o in enumerate(outputs) if o.prompt_id != rows[i // n].id]
        if misplaced:  # the rollout contract: outputs grouped by prompt, in the prompts' order
            raise ValueError(f"outputs not grouped in the rows' order (first misplaced: {misplaced[:3]})")
        return cls(
            rows=[rows[i // n] for i in range(len(outputs))],
            prompts=[prompts[i // n] for i in range(len(outputs))],
            outputs=list(outputs),
            group=torch.arange(len(rows)).repeat_interleave(n),
            rewards=scored.rewards,
            valid=scored.valid,
            format_scores=scored.format_scores.to(torch.float64),
            dimension_scores={d: scored.dimension_scores[d] for d in DIMENSIONS},
            reasons=list(scored.reasons),
            actions=list(scored.actions),
            re_edits=list(scored.re_edits),
            final_images=list(scored.final_images),
            judge_results=list(scored.judge_results) if scored.judge_results else [None] * len(outputs),
            versions=None if version is None else torch.full((len(outputs),), version, dtype=torch.long),
            old_log_probs=old_log_probs,
        )

    @classmethod
    def empty(cls) -> StepBatch:
        return cls([], [], [], torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.float64),
                   torch.zeros(0, dtype=torch.bool), torch.zeros(0, dtype=torch.float64),
                   {d: torch.zeros(0, dtype=torch.float64) for d in DIMENSIONS}, [], [], [], [], [])  # fmt: skip

    # ------------------------------------------------------------------ shape
    def __len__(self) -> int:
        return len(self.outputs)

    @property
    def num_groups(self) -> int:
        return int(self.group.max()) + 1 if len(self) else 0

    # ------------------------------------------------------------------ select / concat
    def select(self, index: torch.Tensor | Sequence[int]) -> StepBatch:
        """The samples at ``index`` (positions, in the given order); group numbers are kept as they are."""
        idx = torch.as_tensor(index, dtype=torch.long)
        pick = idx.tolist()
        return StepBatch(
            rows=[self.rows[i] for i in pick],
            prompts=[self.prompts[i] for i in pick],
            outputs=[self.outputs[i] for i in pick],
            group=self.group[idx],
            rewards=self.rewards[idx],
            valid=self.valid[idx],
            format_scores=self.format_scores[idx],
            dimension_scores={d: v[idx] for d, v in self.dimension_scores.items()},
            reasons=[self.reasons[i] for i in pick],
            actions=[self.actions[i] for i in pick],
            re_edits=[self.re_edits[i] for i in pick],
            final_images=[self.final_images[i] for i in pick],
            judge_results=[self.judge_results[i] for i in pick],
            versions=None if self.versions is None else self.versions[idx],
            old_log_probs=None if self.old_log_probs is None else self.old_log_probs[idx],
        )

    def select_groups(self, keep: torch.Tensor | Sequence[int]) -> StepBatch:
        """Whole groups: ``keep`` is a (G,) bool mask or a list of group indices. Kept groups are renumbered 0..K-1
        in their original order."""
        keep_t = torch.as_tensor(keep)
        if keep_t.dtype == torch.bool:
            if keep_t.numel() != self.num_groups:
                raise ValueError(f"group mask of {keep_t.numel()} for {self.num_groups} groups")
            groups = torch.nonzero(keep_t).flatten()
        else:
            groups = keep_t.to(torch.long)
        positions = (
            torch.cat([torch.nonzero(self.group == g).flatten() for g in groups.tolist()]) if len(groups) else []
        )
        picked = self.select(positions)
        picked.group = _renumber(picked.group)
        return picked

    def first_groups(self, count: int) -> StepBatch:
        """The first ``count`` groups."""
        return self.select_groups(list(range(min(count, self.num_groups))))

    @classmethod
    def concat(cls, batches: Sequence[StepBatch]) -> StepBatch:
        """Batches one after another; group indices continue across them (0..G-1 overall)."""
        parts = [b for b in batches if len(b)]
        if not parts:
            return cls.empty()
        offsets, groups = 0, []
        for b in parts:
            groups.append(b.group + offsets)
            offsets += b.num_groups
        return cls(
            rows=[r for b in parts for r in b.rows],
            prompts=[p for b in parts for p in b.prompts],
            outputs=[o for b in parts for o in b.outputs],
            group=torch.cat(groups),
            rewards=torch.cat([b.rewards for b in parts]),
            valid=torch.cat([b.valid for b in parts]),
            format_scores=torch.cat([b.format_scores for b in parts]),
            dimension_scores={d: torch.cat([b.dimension_scores[d] for b in parts]) for d in DIMENSIONS},
            reasons=[r for b in parts for r in b.reasons],
            actions=[a for b in parts for a in b.actions],
            re_edits=[e for b in parts for e in b.re_edits],
            final_images=[im for b in parts for im in b.final_images],
            judge_results=[j for b in parts for j in b.judge_results],
            versions=torch.cat([b.versions for b in parts]) if all(b.versions is not None for b in parts) else None,
            old_log_probs=_cat_padded([b.old_log_probs for b in parts]),
        )

    # ------------------------------------------------------------------ views
    def masked_by_reason(self) -> Counter:
        return Counter(r for r in self.reasons if r is not None)

    def judged_results(self) -> list[JudgeResult]:
        return [res for res in self.judge_results if res is not None]

    def finite_dimension_scores(self) -> dict[str, list[float]]:
        """Per dimension, the judge scores that exist (for the reward histograms)."""
        return {d: [v for v in self.dimension_scores[d].tolist() if math.isfinite(v)] for d in DIMENSIONS}

    def response_tokens(self) -> int:
        return sum(len(o.token_ids) for o in self.outputs)

    def staleness(self, actor_version: int) -> torch.Tensor | None:
        """(N,) updates between the weights that generated each sample and ``actor_version`` (the weights the update
        starts from); ``None`` when the versions are unknown."""
        return None if self.versions is None else actor_version - self.versions


def _cat_padded(parts: list[torch.Tensor | None]) -> torch.Tensor | None:
    """(N_i, T_i) tensors stacked on dim 0, zero-padded to the widest; ``None`` unless every part has one."""
    if not parts or any(p is None for p in parts):
        return None
    width = max(p.shape[1] for p in parts)  # type: ignore[union-attr]
    return torch.cat([torch.nn.functional.pad(p, (0, width - p.shape[1])) for p in parts])  # type: ignore[union-attr]


def _renumber(group: torch.Tensor) -> torch.Tensor:
    """Group ids renumbered 0..K-1 in order of first appearance."""
    if not group.numel():
        return group
    _, first = torch.unique_consecutive(group, return_inverse=True)
    return first
