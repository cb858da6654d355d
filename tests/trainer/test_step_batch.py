"""The per-step batch: built from one pass, whole groups selected and renumbered, batches joined with their group
numbers continued, every per-sample field kept aligned."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from PIL import Image

from easyr1.config import DIMENSIONS
from easyr1.core.types import EditSample, PolicyPrompt, RolloutOutput
from easyr1.trainer.scoring import ScoredBatch
from easyr1.trainer.step_batch import StepBatch

N = 3


def one_pass(prefix: str, groups: int, *, fail: set[int] = frozenset()) -> StepBatch:
    image = Image.new("RGB", (4, 4))
    rows = [EditSample(f"{prefix}{g}", "t", "i", image, image) for g in range(groups)]
    prompts = [PolicyPrompt(r.id, [], [image, image]) for r in rows]
    outputs = [RolloutOutput(r.id, k, f"{r.id}/{k}", [1] * (k + 1)) for r in rows for k in range(N)]
    total = len(outputs)
    rewards = torch.arange(total, dtype=torch.float64)
    valid = torch.ones(total, dtype=torch.bool)
    reasons: list[str | None] = [None] * total
    for i in fail:
        rewards[i], valid[i], reasons[i] = math.nan, False, "judge:timeout"
    scored = ScoredBatch(
        rewards=rewards,
        valid=valid,
        format_scores=torch.full((total,), 5.0, dtype=torch.float64),
        dimension_scores={d: rewards.clone() for d in DIMENSIONS},
        reasons=reasons,
        re_edits=[o.text for o in outputs],
        texts=[o.text for o in outputs],
        final_images=[None] * total,
        actions=["edit"] * total,
        judge_results=[None] * total,
    )
    return StepBatch.from_pass(rows, prompts, outputs, scored)


def test_a_pass_is_grouped_by_prompt_with_rows_and_prompts_per_sample():
    batch = one_pass("a", 2)
    assert len(batch) == 6 and batch.num_groups == 2
    assert batch.group.tolist() == [0, 0, 0, 1, 1, 1]
    assert [r.id for r in batch.rows] == ["a0"] * 3 + ["a1"] * 3
    assert [p.id for p in batch.prompts] == [o.prompt_id for o in batch.outputs]
    assert batch.response_tokens() == 2 * (1 + 2 + 3)


def test_outputs_that_do_not_group_evenly_are_refused():
    batch = one_pass("a", 2)
    with pytest.raises(ValueError, match="cannot be grouped"):
        StepBatch.from_pass(batch.rows[:1] + batch.rows[3:4], [], batch.outputs[:5], None)  # type: ignore[arg-type]


def test_outputs_out_of_the_rows_order_are_refused():
    batch = one_pass("a", 2)
    rows = [batch.rows[0], batch.rows[3]]
    shuffled = batch.outputs[3:] + batch.outputs[:3]
    with pytest.raises(ValueError, match="not grouped in the rows' order"):
        StepBatch.from_pass(rows, batch.prompts[::3], shuffled, None)  # type: ignore[arg-type]


def test_select_groups_keeps_whole_groups_in_order_and_renumbers_them():
    batch = one_pass("a", 3, fail={4})
    kept = batch.select_groups(torch.tensor([True, False, True]))
    assert kept.group.tolist() == [0, 0, 0, 1, 1, 1]
    assert [o.text for o in kept.outputs] == ["a0/0", "a0/1", "a0/2", "a2/0", "a2/1", "a2/2"]
    assert kept.rewards.tolist() == [0, 1, 2, 6, 7, 8]
    assert kept.dimension_scores[DIMENSIONS[0]].tolist() == [0, 1, 2, 6, 7, 8]
    assert kept.masked_by_reason() == Counter()  # the failed sample was in the dropped group
    assert batch.select_groups([1]).masked_by_reason() == Counter({"judge:timeout": 1})
    with pytest.raises(ValueError, match="group mask"):
        batch.select_groups(torch.tensor([True, False]))


def test_concat_continues_group_numbers_and_first_groups_cuts_whole_groups():
    joined = StepBatch.concat([one_pass("a", 2), StepBatch.empty(), one_pass("b", 2, fail={0})])
    assert joined.num_groups == 4
    assert joined.group.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert [r.id for r in joined.rows[::N]] == ["a0", "a1", "b0", "b1"]
    assert joined.valid.tolist().count(False) == 1 and joined.reasons[6] == "judge:timeout"
    first = joined.first_groups(3)
    assert first.num_groups == 3 and [r.id for r in first.rows[::N]] == ["a0", "a1", "b0"]
    assert joined.first_groups(10).num_groups == 4
    empty = StepBatch.concat([])
    assert len(empty) == 0 and empty.num_groups == 0


def test_finite_dimension_scores_leave_unjudged_samples_out():
    batch = one_pass("a", 1, fail={1})
    assert batch.finite_dimension_scores()[DIMENSIONS[0]] == [0.0, 2.0]
