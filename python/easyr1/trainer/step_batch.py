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

    # ------------------------------------------------------------------ building
    @classmethod
    def from_pass(
        cls,
        rows: Sequence[EditSample],
        prompts: Sequence[PolicyPrompt],
        outputs: Sequence[RolloutOutput],
        scored: ScoredBatch,
    ) -> StepBatch:
        """One rollout + scoring pass of ``rows`` (``len(outputs) / len(rows)`` responses per row, grouped)."""
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


def _renumber(group: torch.Tensor) -> torch.Tensor:
    """Group ids renumbered 0..K-1 in order of first appearance."""
    if not group.numel():
        return group
    _, first = torch.unique_consecutive(group, return_inverse=True)
    return first
