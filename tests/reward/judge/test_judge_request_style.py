"""The judge's request layout: easyr1's (system rubric, labelled images) and the reference's (one user message with
rubric, task description and instruction, unlabelled images after the text), and the rubric's neutral anchor."""

from __future__ import annotations

import base64
import io

import pytest
from judge_testkit import API_KEY, picture
from PIL import Image

from easyr1.config import JudgeConfig
from easyr1.reward.judge.openai_judge import OpenAIJudge
from easyr1.reward.judge.protocol import JudgeRequest


@pytest.fixture
def judge_for():
    judges: list[OpenAIJudge] = []

    def make(**settings: object) -> OpenAIJudge:
        cfg = JudgeConfig(base_url="http://127.0.0.1:9", mode="per_dimension", **settings)  # type: ignore[arg-type]
        assert not list(cfg.validate("judge"))
        judge = OpenAIJudge(cfg, api_key=API_KEY)
        judges.append(judge)
        return judge

    yield make
    for judge in judges:
        judge.close()


def request(task: str | None = "add") -> JudgeRequest:
    metadata = {"task": task} if task is not None else {}
    return JudgeRequest(picture(1), picture(2), "turn the car red", key="r0", metadata=metadata)


def calls(judge: OpenAIJudge, req: JudgeRequest):
    built, _ = judge._prepare_sample(req, {})
    return built


def test_easyr1_layout_is_unchanged(judge_for):
    call = calls(judge_for(), request())[0]
    system, user = call.kwargs["messages"]
    assert system["role"] == "system" and "start from 5, the neutral value" in system["content"]
    texts = [p["text"] for p in user["content"] if p["type"] == "text"]
    assert texts[0] == "Edit instruction: turn the car red"
    assert texts[1].startswith("Image 1 (source image") and texts[2].startswith("Image 2 (edited image")
    assert "add" not in " ".join(texts)  # easyr1's request carries no task description


def test_reference_layout(judge_for):
    judge = judge_for(request_style="reference", neutral_score=2.0, jpeg_quality=60)
    built = calls(judge, request())
    assert len(built) == 5  # one call per dimension
    for call in built:
        (message,) = call.kwargs["messages"]
        assert message["role"] == "user"
        parts = message["content"]
        assert [p["type"] for p in parts] == ["text", "image_url", "image_url"]  # text first, images unlabelled
        text = parts[0]["text"]
        assert "start from 2, the neutral value" in text and "the score stays 2." in text
        assert text.index("Aspect to judge") < text.index("Original image description:\nImage editing task: add")
        assert text.endswith("Editing instruction:\nturn the car red")
        assert "Image 1" not in text and "the first is the source image" in text
        assert all(p["image_url"]["detail"] == "low" for p in parts[1:])
    url = built[0].kwargs["messages"][0]["content"][1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).verify()


def test_reference_layout_without_a_task_omits_the_description(judge_for):
    call = calls(judge_for(request_style="reference"), request(task=None))[0]
    text = call.kwargs["messages"][0]["content"][0]["text"]
    assert "Original image description" not in text and text.endswith("Editing instruction:\nturn the car red")


def test_cache_keys_differ_by_layout_and_task(judge_for, tmp_path):
    keys = set()
    for settings, task in [
        ({}, "add"),
        ({"request_style": "reference"}, "add"),
        ({"request_style": "reference"}, "remove"),
        ({"request_style": "reference", "neutral_score": 2.0}, "add"),
    ]:
        judge = judge_for(cache_dir=str(tmp_path / "cache"), **settings)
        keys.add(calls(judge, request(task))[0].cache_key)
    assert len(keys) == 4 and None not in keys


def test_config_rejects_unknown_style():
    errors = list(JudgeConfig(request_style="verl", neutral_score=11).validate("judge"))
    assert {e.key for e in errors} == {"judge.request_style", "judge.neutral_score"}
