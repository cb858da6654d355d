"""Training requests to the judge carry the row's task type, so ``judge.request_style: reference`` sends the
reference's ``Image editing task: <task>`` line during training too (not only from ``easyr1 judge``).

The judge is the real :class:`OpenAIJudge`; only the network call is replaced: each request is built exactly as it
would be sent, recorded, and answered with a score."""

from __future__ import annotations

import pytest
from PIL import Image

from easyr1.config import DIMENSIONS, load_config
from easyr1.core.types import EditResult, EditSample, RolloutOutput
from easyr1.reward.judge.openai_judge import OpenAIJudge
from easyr1.reward.judge.protocol import JudgeResult
from easyr1.trainer.scoring import RewardPipeline

GOOD = "<CoT>The shadow falls the wrong way.</CoT>\n<Re_edit>Move the shadow to the left</Re_edit>"
NO_TAGS = "I would improve the picture."


class TintEditor:
    def edit(self, requests):
        return [EditResult(image=Image.new("RGB", (32, 32), (10, 20, 30)), ok=True, info={}) for _ in requests]


class BuildingJudge:
    """Builds every request with the real judge's request builder and records the texts it would send."""

    def __init__(self, cfg):
        self.judge = OpenAIJudge(cfg.judge, api_key="sk-test-not-used")
        self.texts: dict[str, list[str]] = {}

    def score_batch(self, requests):
        for req in requests:
            calls, _ = self.judge._prepare_sample(req, {})
            self.texts[req.key] = [
                part["text"]
                for call in calls
                for message in call.kwargs["messages"]
                for part in (message["content"] if isinstance(message["content"], list) else [])
                if part["type"] == "text"
            ]
        return [JudgeResult(scores=dict.fromkeys(DIMENSIONS, 2.0), valid=True) for _ in requests]

    def close(self):
        self.judge.close()


def _row(task: str) -> EditSample:
    img = Image.new("RGB", (32, 32), (40, 40, 40))
    return EditSample(id="r0", task=task, instruction="make it rain", source_image=img, edited_image=img)


def _score(overrides: list[str], task: str, texts: list[str]) -> BuildingJudge:
    cfg = load_config(None, ["judge.base_url=http://127.0.0.1:9", *overrides])
    judge = BuildingJudge(cfg)
    outputs = [RolloutOutput(prompt_id="r0", sample_index=k, text=t, token_ids=[1]) for k, t in enumerate(texts)]
    try:
        RewardPipeline(cfg, TintEditor(), judge).score([_row(task)], outputs)
    finally:
        judge.close()
    return judge


@pytest.mark.parametrize("policy", ["fallback_instruction", "skip_edit"])
def test_reference_style_training_requests_carry_the_task(policy):
    judge = _score(["compat=reference", f"worker.reward.missing_re_edit={policy}"], "add", [GOOD, NO_TAGS])
    assert set(judge.texts) == {"r0/0", "r0/1"}  # an edited response and one without <Re_edit>
    for key, texts in judge.texts.items():
        assert len(texts) == len(DIMENSIONS), key  # per-dimension calls
        assert all("Original image description:\nImage editing task: add" in t for t in texts), key


def test_preliminary_requests_carry_the_task():
    overrides = ["compat=reference", "worker.reward.improvement=true", "worker.image_edit.seed_mode=per_group"]
    judge = _score(overrides, "remove", [GOOD])
    assert all("Image editing task: remove" in t for t in judge.texts["r0/preliminary"])


def test_no_task_no_description():
    judge = _score(["compat=reference"], "", [GOOD])
    assert not any("Original image description" in t for t in judge.texts["r0/0"])


def test_default_request_style_sends_no_task():
    judge = _score([], "add", [GOOD])
    assert not any("add" in t.split() for t in judge.texts["r0/0"])
