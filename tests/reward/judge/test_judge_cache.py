"""The answer cache: hits on a second run without HTTP, keyed by content, only for deterministic settings."""

from __future__ import annotations

import logging

import pytest
from judge_testkit import make_requests, picture

from easyr1.reward.judge import JudgeRequest, rubrics
from easyr1.testing.judge_server import Rule, ServerBehaviour


@pytest.mark.parametrize("mode", ["per_dimension", "single_call"])
def test_second_run_is_served_from_the_cache(server, make_judge, tmp_path, mode: str) -> None:
    server.behaviour = ServerBehaviour(scores={"cultural_social": 3.0})
    first = make_judge(mode=mode, cache_dir=str(tmp_path / "cache")).score_batch(make_requests(3))
    sent = server.request_count
    assert sent == 3 * (5 if mode == "per_dimension" else 1)
    judge = make_judge(mode=mode, cache_dir=str(tmp_path / "cache"))  # a new judge: the cache is on disk
    second = judge.score_batch(make_requests(3))
    assert server.request_count == sent  # no second HTTP call
    assert [r.scores for r in second] == [r.scores for r in first]
    assert all(r.cached and r.valid and r.calls == 0 and r.prompt_tokens == 0 for r in second)
    stats = judge.stats.snapshot()
    assert stats.cache_hits == sent and stats.cache_misses == 0 and stats.calls == 0


def test_failures_are_not_cached(server, make_judge, tmp_path) -> None:
    server.behaviour = ServerBehaviour(rules=[Rule(kind="malformed", dimension="logical_causal", times=1)])
    judge = make_judge(cache_dir=str(tmp_path))
    assert judge.score_batch(make_requests(1))[0].reason == "unparsable"
    again = judge.score_batch(make_requests(1))[0]
    assert again.valid and not again.cached
    assert again.calls == 1  # only the dimension that failed is asked again
    assert server.request_count == 6


def test_key_depends_on_instruction_images_and_rubric_version(server, make_judge, tmp_path, monkeypatch) -> None:
    judge = make_judge(mode="single_call", cache_dir=str(tmp_path))
    base = JudgeRequest(picture(1), picture(2), "sample-0: add a hat")
    judge.score_batch([base])
    assert judge.score_batch([base])[0].cached
    variants = [
        JudgeRequest(picture(1), picture(2), "sample-0: add a scarf"),
        JudgeRequest(picture(1), picture(3), "sample-0: add a hat"),
        JudgeRequest(picture(4), picture(2), "sample-0: add a hat"),
    ]
    assert not any(r.cached for r in judge.score_batch(variants))
    monkeypatch.setattr(rubrics, "RUBRIC_VERSION", "test-next-version")
    assert not judge.score_batch([base])[0].cached


def test_sampling_settings_and_model_change_the_key(server, make_judge, tmp_path) -> None:
    def cached(**settings: object) -> bool:
        judge = make_judge(mode="single_call", cache_dir=str(tmp_path), **settings)
        return judge.score_batch(make_requests(1))[0].cached

    assert not cached()
    assert cached()
    assert not cached(model="other")
    assert not cached(max_tokens=64)
    assert not cached(image_detail="high")


def test_cache_off_when_sampling_is_not_deterministic(server, make_judge, tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        judge = make_judge(mode="single_call", cache_dir=str(tmp_path), temperature=0.7)
    assert judge.cache is None and "cache disabled" in caplog.text
    judge.score_batch(make_requests(1))
    assert not judge.score_batch(make_requests(1))[0].cached
    assert server.request_count == 2
    # probability scoring is deterministic even at temperature > 0
    assert make_judge(cache_dir=str(tmp_path), temperature=0.7, use_logprobs=True).cache is not None
