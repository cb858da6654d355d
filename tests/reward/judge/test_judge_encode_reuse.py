"""The client encodes each image once: across the samples of a batch, across batches (by pixel content), and a
broken image fails only the samples that carry it, with ``image_error``."""

from __future__ import annotations

import io

import pytest
from judge_testkit import make_requests, picture
from PIL import Image, ImageDraw

from easyr1.reward.judge import JudgeRequest
from easyr1.reward.judge import openai_judge as openai_judge_module


@pytest.fixture
def encodes(monkeypatch) -> list[int]:
    """The ``id`` of every image the judge encodes."""
    seen: list[int] = []
    real = openai_judge_module.encode_image

    def counting(image, **kw):
        seen.append(id(image))
        return real(image, **kw)

    monkeypatch.setattr(openai_judge_module, "encode_image", counting)
    return seen


def test_shared_source_encoded_once_when_samples_come_one_per_batch(make_judge, encodes) -> None:
    """The streaming path submits one sample per call: the group's source image is still encoded once."""
    judge = make_judge(mode="single_call")
    source = picture(1)
    for request in make_requests(4, shared_source=source):
        assert judge.score_batch([request])[0].valid
    assert encodes.count(id(source)) == 1 and len(encodes) == 5  # 1 source + 4 edited
    assert judge.encodings.hits == 3


def test_equal_pixels_in_a_new_object_hit_changed_pixels_are_encoded_again(server, make_judge, encodes) -> None:
    judge = make_judge(mode="single_call")
    source = picture(1)
    first = JudgeRequest(source, picture(2), "sample-0: brighten")
    assert judge.score_batch([first])[0].valid
    assert judge.score_batch([JudgeRequest(picture(1), picture(2), "sample-0: brighten")])[0].valid
    assert len(encodes) == 2  # the copies hit

    ImageDraw.Draw(source).rectangle((0, 0, 10, 10), fill=(0, 0, 0))  # the same object, changed in place
    assert judge.score_batch([first])[0].valid
    assert sorted(encodes) == sorted([id(source), id(first.edited_image), id(source)])  # the source again


def test_an_image_that_cannot_be_encoded_fails_only_its_samples(make_judge, monkeypatch) -> None:
    broken = picture(50)
    real = openai_judge_module.encode_image

    def failing(image, **kw):
        if image is broken:
            raise OSError("image file is truncated")
        return real(image, **kw)

    monkeypatch.setattr(openai_judge_module, "encode_image", failing)
    judge = make_judge(mode="per_dimension")
    requests = make_requests(4)
    requests[2] = JudgeRequest(requests[2].source_image, broken, "sample-2: x", key="sample-2")
    results = judge.score_batch(requests)
    assert [r.valid for r in results] == [True, True, False, True]
    assert results[2].reason == "image_error" and results[2].scores is None and results[2].calls == 0
    assert judge.stats.snapshot().failures == {"image_error": 1}
    assert judge.score_batch([requests[2]])[0].reason == "image_error"  # the failure was not cached


def test_a_truncated_image_file_fails_its_sample_not_the_batch(make_judge) -> None:
    """A real broken input: a PNG cut short, opened lazily; reading its pixels raises inside the judge."""
    buffer = io.BytesIO()
    picture(60, size=(256, 256)).save(buffer, format="PNG")
    truncated = Image.open(io.BytesIO(buffer.getvalue()[: len(buffer.getvalue()) // 2]))
    requests = make_requests(3)
    requests[0] = JudgeRequest(truncated, requests[0].edited_image, "sample-0: x", key="sample-0")
    results = make_judge(mode="single_call").score_batch(requests)
    assert [r.reason for r in results] == ["image_error", None, None]
