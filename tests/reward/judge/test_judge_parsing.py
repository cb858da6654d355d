"""Strict answer parsing: a bare number in [0, 10] or the exact JSON schema; nothing else is a score."""

from __future__ import annotations

import json
import math

import pytest

from easyr1.reward.judge.parsing import expected_score, looks_like_refusal, parse_json_answer, parse_number_answer
from easyr1.reward.judge.protocol import DIMENSIONS


@pytest.mark.parametrize(("text", "value"), [("7", 7.0), (" 6.5\n", 6.5), ("0", 0.0), ("10", 10.0), ("10.0", 10.0)])
def test_number_answers_accepted(text: str, value: float) -> None:
    assert parse_number_answer(text) == value


@pytest.mark.parametrize(
    "text",
    [None, "", "seven", "7/10", "Score: 7", "**7**", "7.", "-1", "10.5", "11", "7 8", "7\nbecause", "1e1", "nan"],
)
def test_number_answers_rejected(text: str | None) -> None:
    assert parse_number_answer(text) is None


def _json_answer(**changes: object) -> dict:
    data: dict = {d: {"reason": "ok", "score": 6} for d in DIMENSIONS}
    data.update(changes)
    return data


def test_json_answer_accepted_in_dimension_order() -> None:
    data = _json_answer(cultural_social={"reason": "fits", "score": 3.5})
    scores = parse_json_answer(json.dumps(data))
    assert scores is not None
    assert list(scores) == list(DIMENSIONS)
    assert scores["cultural_social"] == 3.5 and scores["physical_geometric"] == 6.0


@pytest.mark.parametrize(
    "bad",
    [
        "not json",
        "[1, 2]",
        json.dumps({d: {"reason": "ok", "score": 6} for d in DIMENSIONS[:4]}),  # one dimension missing
        json.dumps({**_json_answer(), "extra": {"reason": "x", "score": 1}}),  # extra key
        json.dumps(_json_answer(logical_causal={"reason": "ok", "score": 12})),  # out of range
        json.dumps(_json_answer(logical_causal={"reason": "ok", "score": "7"})),  # string score
        json.dumps(_json_answer(logical_causal={"reason": "ok", "score": True})),  # bool is not a number
        json.dumps(_json_answer(logical_causal={"score": 7})),  # no reason
        json.dumps(_json_answer(logical_causal={"reason": "ok", "score": 7, "confidence": 1})),
        "```json\n" + json.dumps(_json_answer()) + "\n```",  # fenced
    ],
)
def test_json_answers_rejected(bad: str) -> None:
    assert parse_json_answer(bad) is None


def test_refusal_openings() -> None:
    assert looks_like_refusal("I'm sorry, but I can't help with that.")
    assert looks_like_refusal("I\u2019m sorry, I cannot assess this image.")
    assert not looks_like_refusal("7")
    assert not looks_like_refusal(None)


def _entry(token: str, top: dict[str, float]) -> dict:
    return {
        "token": token,
        "logprob": math.log(top.get(token, 1e-9)),
        "top_logprobs": [{"token": t, "logprob": math.log(p)} for t, p in top.items()],
    }


def test_expected_score_is_probability_weighted_and_renormalised() -> None:
    content = [_entry("7", {"7": 0.5, "8": 0.3, "6": 0.1, "The": 0.1})]
    assert expected_score(content) == pytest.approx((7 * 0.5 + 8 * 0.3 + 6 * 0.1) / 0.9)


def test_expected_score_splits_digit_tokenised_ten() -> None:
    # "10" as "1" + "0": p("1") = 0.6 splits by p("0" | "1") = 0.5 into 1 and 10
    content = [_entry("1", {"1": 0.6, "9": 0.4}), _entry("0", {"0": 0.5, "<|im_end|>": 0.5})]
    assert expected_score(content) == pytest.approx(0.3 * 1 + 0.3 * 10 + 0.4 * 9)


def test_expected_score_untrusted_without_enough_mass() -> None:
    assert expected_score([_entry("7", {"7": 0.3, "The": 0.7})]) is None
    assert expected_score(None) is None
    assert expected_score([]) is None
