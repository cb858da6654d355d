"""End to end against the loopback server: scores, order, modes, logprobs, images, stats, calling contexts."""

from __future__ import annotations

import asyncio

import pytest
from judge_testkit import make_requests, picture

from easyr1.reward.judge import JudgeRequest
from easyr1.reward.judge import openai_judge as openai_judge_module
from easyr1.reward.judge.protocol import DIMENSIONS
from easyr1.testing.judge_server import Rule, ServerBehaviour


def _distinct_scores(n: int) -> list[Rule]:
    """Sample i gets score (i + k) % 11 on dimension k, so a mix-up of samples or dimensions shows."""
    return [
        Rule(match=f"sample-{i}:", scores={d: float((i + k) % 11) for k, d in enumerate(DIMENSIONS)}) for i in range(n)
    ]


def _expected(i: int) -> dict[str, float]:
    return {d: float((i + k) % 11) for k, d in enumerate(DIMENSIONS)}


@pytest.mark.parametrize("mode", ["per_dimension", "single_call"])
def test_scores_end_to_end_in_input_order(server, make_judge, mode: str) -> None:
    n = 12
    server.behaviour = ServerBehaviour(latency_s=0.01, rules=_distinct_scores(n))
    judge = make_judge(mode=mode, max_concurrency=4)
    results = judge.score_batch(make_requests(n))
    assert len(results) == n
    for i, result in enumerate(results):
        assert result.valid and result.reason is None and not result.cached
        assert result.scores == _expected(i)
        assert list(result.scores) == list(DIMENSIONS)
        assert result.calls == (5 if mode == "per_dimension" else 1)
        assert result.prompt_tokens > 0 and result.completion_tokens > 0
    stats = server.stats()
    assert stats["request_count"] == n * (5 if mode == "per_dimension" else 1)
    records = stats["records"]
    if mode == "per_dimension":
        assert {r["dimension"] for r in records} == set(DIMENSIONS)
    else:
        assert {r["mode"] for r in records} == {"single_call"}
    assert all(r["n_images"] == 2 and r["has_authorization"] for r in records)


def test_empty_batch(make_judge) -> None:
    assert make_judge().score_batch([]) == []


def test_expected_score_from_logprobs(server, make_judge) -> None:
    server.behaviour = ServerBehaviour(scores={"physical_geometric": 10.0}, default_score=7.0, logprob_spread=0.2)
    judge = make_judge(use_logprobs=True)
    (result,) = judge.score_batch(make_requests(1))
    assert result.valid and result.scores is not None
    # 10 → p(10)=0.6+0.2 (the mass above 10 folds back), p(9)=0.2 → 9.8; 7 is symmetric → 7.0
    assert result.scores["physical_geometric"] == pytest.approx(9.8)
    assert result.scores["logical_causal"] == pytest.approx(7.0)
    assert all(r["logprobs"] for r in server.stats()["records"])


def test_preliminary_image_sent_as_third_image(server, make_judge) -> None:
    request = JudgeRequest(picture(1), picture(2), "sample-0: fix the shadow", preliminary_image=picture(3))
    assert make_judge(judge_preliminary=False, mode="single_call").score_batch([request])[0].valid
    assert server.stats()["records"][-1]["n_images"] == 2
    assert make_judge(judge_preliminary=True, mode="single_call").score_batch([request])[0].valid
    assert server.stats()["records"][-1]["n_images"] == 3


def test_images_encoded_once_per_sample(make_judge, monkeypatch) -> None:
    calls = []
    real = openai_judge_module.encode_image

    def counting(image, **kw):
        calls.append(id(image))
        return real(image, **kw)

    monkeypatch.setattr(openai_judge_module, "encode_image", counting)
    shared = picture(7)
    results = make_judge(mode="per_dimension").score_batch(make_requests(3, shared_source=shared))
    assert all(r.valid for r in results)
    assert len(calls) == 4  # one shared source + three edited images, not 5 calls × 2 images × 3 samples


def test_stats_tokens_cost_and_drain(server, make_judge) -> None:
    judge = make_judge(price_per_1k_prompt_tokens=1.0, price_per_1k_completion_tokens=2.0)
    results = judge.score_batch(make_requests(2))
    stats = judge.stats.snapshot()
    assert stats.samples == 2 and stats.valid == 2 and stats.calls == 10 and stats.http_requests == 10
    assert stats.http_status == {"200": 10} and stats.call_outcomes == {"ok": 10}
    assert stats.prompt_tokens == sum(r.prompt_tokens for r in results)
    assert stats.cost_usd == pytest.approx(stats.prompt_tokens / 1000 + 2 * stats.completion_tokens / 1000)
    assert len(stats.call_latencies_s) == 10 and stats.latency_quantile(0.95) >= stats.latency_quantile(0.5)
    metrics = stats.to_metrics()
    assert metrics["judge/requests/ok"] == 10 and metrics["judge/cost_usd"] == pytest.approx(stats.cost_usd)
    assert judge.stats.drain().calls == 10
    assert judge.stats.snapshot().calls == 0


def test_sync_call_from_inside_a_running_event_loop(make_judge) -> None:
    judge = make_judge(mode="single_call")

    async def caller() -> list:
        return judge.score_batch(make_requests(2))  # a blocking call made by async code

    assert all(r.valid for r in asyncio.run(caller()))


def test_async_api_and_progress_callback(make_judge) -> None:
    judge = make_judge(mode="single_call")
    seen: list[int] = []
    results = asyncio.run(judge.ascore_batch(make_requests(3), on_result=lambda i, r: seen.append(i)))
    assert all(r.valid for r in results) and sorted(seen) == [0, 1, 2]


def test_bad_request_object_names_the_request(make_judge) -> None:
    request = JudgeRequest(picture(1), None, "x", key="row-9")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"row-9.*edited_image"):
        make_judge().score_batch([request])
