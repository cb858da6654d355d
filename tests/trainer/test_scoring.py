"""The reward pipeline masks and counts every failure and never fills in a score."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from easyr1.config import DIMENSIONS, load_config
from easyr1.core.seeds import edit_seed
from easyr1.core.types import EditResult, EditSample, RolloutOutput
from easyr1.reward.judge.protocol import JudgeResult
from easyr1.trainer.scoring import RewardPipeline

GOOD = "<CoT>The shadow falls the wrong way.</CoT>\n<Re_edit>Move the shadow to the left</Re_edit>"
NO_TAGS = "I would improve the picture."


class RecordingEditor:
    """Edits by tinting the image; fails on instructions containing 'explode'."""

    def __init__(self):
        self.requests = []

    def edit(self, requests):
        self.requests.extend(requests)
        out = []
        for req in requests:
            if "explode" in req.instruction:
                out.append(EditResult.failure("exception"))
            else:
                out.append(
                    EditResult(image=Image.new("RGB", (8, 8), (10, 20, 30)), ok=True, info={"edited": req.instruction})
                )
        return out


class ScriptedJudge:
    """Scores 8 on every dimension, except keys listed in ``fail`` (-> timeout)."""

    def __init__(self, fail=()):
        self.fail = set(fail)
        self.requests = []

    def score_batch(self, requests):
        self.requests.extend(requests)
        return [
            JudgeResult.failure("timeout")
            if req.key in self.fail
            else JudgeResult(scores=dict.fromkeys(DIMENSIONS, 8.0), valid=True)
            for req in requests
        ]


def _row(i):
    img = Image.new("RGB", (8, 8), (i, i, i))
    return EditSample(
        id=f"r{i}", task="t", instruction="make it rain", source_image=img, edited_image=img, metadata={"scene": i}
    )


def _outputs(texts, prompt_id="r0"):
    return [RolloutOutput(prompt_id=prompt_id, sample_index=k, text=t, token_ids=[1, 2]) for k, t in enumerate(texts)]


@pytest.fixture
def cfg():
    return load_config(None, ["worker.reward.strategy=weighted_sum", "worker.reward.missing_re_edit=zero_reward"])


def test_valid_samples_get_combined_reward(cfg):
    editor, judge = RecordingEditor(), ScriptedJudge()
    scored = RewardPipeline(cfg, editor, judge).score([_row(0)], _outputs([GOOD, GOOD]))
    assert scored.valid.tolist() == [True, True]
    fmt = float(scored.format_scores[0])
    expected = 0.75 * 8.0 + 0.25 * fmt * 2
    assert scored.rewards.tolist() == pytest.approx([expected, expected])
    # The editor got the extracted instruction and the row's metadata; the judge got the editor's info too.
    assert editor.requests[0].instruction == "Move the shadow to the left"
    assert judge.requests[0].metadata == {"scene": 0, "task": "t", "edited": "Move the shadow to the left"}


def test_failures_are_masked_with_reasons(cfg):
    texts = [GOOD, "<CoT>x</CoT>\n<Re_edit>explode it</Re_edit>", GOOD, NO_TAGS]
    judge = ScriptedJudge(fail={"r0/2"})
    scored = RewardPipeline(cfg, RecordingEditor(), judge).score([_row(0)], _outputs(texts))
    assert scored.reasons == [None, "edit:exception", "judge:timeout", None]
    assert scored.valid.tolist() == [True, False, False, True]
    assert math.isnan(scored.rewards[1]) and math.isnan(scored.rewards[2])
    assert scored.rewards[3] == 0.0  # zero_reward: a counted outcome, not a default score
    assert scored.counts["no_re_edit"] == 1 and scored.counts["edit_failed"] == 1 and scored.counts["judge_failed"] == 1
    for d in DIMENSIONS:
        assert math.isnan(scored.dimension_scores[d][1]) and math.isnan(scored.dimension_scores[d][2])
    assert len(judge.requests) == 2  # neither the failed edit nor the missing re-edit reached the judge


def test_skip_edit_judges_the_preliminary_image():
    cfg = load_config(None, ["worker.reward.missing_re_edit=skip_edit"])
    editor, judge = RecordingEditor(), ScriptedJudge()
    row = _row(3)
    scored = RewardPipeline(cfg, editor, judge).score([row], _outputs([NO_TAGS], "r3"))
    assert editor.requests == []
    assert judge.requests[0].edited_image is row.edited_image
    assert scored.valid.tolist() == [True] and scored.counts["no_re_edit"] == 1


def test_fallback_instruction_is_edited_and_counted():
    cfg = load_config(None, ["worker.reward.missing_re_edit=fallback_instruction"])
    editor = RecordingEditor()
    scored = RewardPipeline(cfg, editor, ScriptedJudge()).score([_row(0)], _outputs([NO_TAGS]))
    assert editor.requests[0].instruction == cfg.worker.reward.fallback_instruction
    assert scored.counts["no_re_edit"] == 1


def test_seeds_per_item_and_per_group():
    cfg = load_config(None, [])
    editor = RecordingEditor()
    RewardPipeline(cfg, editor, ScriptedJudge()).score([_row(0)], _outputs([GOOD, GOOD]))
    seeds = [r.seed for r in editor.requests]
    assert seeds[0] != seeds[1] and seeds[0] == edit_seed(cfg.worker.image_edit, "r0", 0)
    cfg = load_config(None, ["worker.image_edit.seed_mode=per_group"])
    editor = RecordingEditor()
    RewardPipeline(cfg, editor, ScriptedJudge()).score([_row(0)], _outputs([GOOD, GOOD]))
    assert editor.requests[0].seed == editor.requests[1].seed


def test_improvement_uses_cached_preliminary_scores():
    cfg = load_config(
        None,
        [
            "worker.reward.improvement=true",
            "worker.image_edit.seed_mode=per_group",
            "worker.reward.strategy=weighted_sum",
        ],
    )
    judge = ScriptedJudge()
    pipeline = RewardPipeline(cfg, RecordingEditor(), judge)
    scored = pipeline.score([_row(0)], _outputs([GOOD, GOOD]))
    assert [r.key for r in judge.requests].count("r0/preliminary") == 1
    pipeline.score([_row(0)], _outputs([GOOD]))
    assert [r.key for r in judge.requests].count("r0/preliminary") == 1  # cached
    assert torch.isfinite(scored.rewards).all() and (scored.rewards <= 10).all()


def test_judge_returning_wrong_count_is_an_error(cfg):
    class ShortJudge:
        def score_batch(self, requests):
            return []

    with pytest.raises(RuntimeError, match="judge returned 0 results"):
        RewardPipeline(cfg, RecordingEditor(), ShortJudge()).score([_row(0)], _outputs([GOOD]))
