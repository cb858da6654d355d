"""An answer the model did not end itself (``finish_reason`` other than ``stop``) is never read as a score, and a
per-dimension answer must be a complete number of the documented grammar (docs/judge.md, "Reading the answers")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from judge_testkit import API_KEY, make_requests
from test_judge_cli import run_judge, write_rows

from easyr1.reward.judge.parsing import finish_failure, parse_number_answer
from easyr1.reward.judge.protocol import DIMENSIONS, FAILURE_REASONS
from easyr1.testing.judge_server import Rule, ServerBehaviour


def test_per_dimension_answer_cut_by_max_tokens_is_truncated_not_a_one(server, make_judge) -> None:
    # "10" cut after one token is "1": a complete-looking number that must not become a valid 1.0
    server.behaviour = ServerBehaviour(default_score=10.0)
    results = make_judge(mode="per_dimension", max_tokens=1).score_batch(make_requests(2))
    assert [(r.valid, r.reason, r.scores) for r in results] == [(False, "truncated", None)] * 2
    records = server.stats()["records"]
    assert {r["max_tokens"] for r in records} == {1}  # the server saw the limit and cut the answers


def test_truncated_calls_are_counted_by_reason(server, make_judge) -> None:
    server.behaviour = ServerBehaviour(default_score=10.0)
    judge = make_judge(mode="per_dimension", max_tokens=1)
    judge.score_batch(make_requests(1))
    stats = judge.stats.snapshot()
    assert stats.failures == {"truncated": 1}
    assert stats.call_outcomes == {"truncated": len(DIMENSIONS)}


def test_single_call_answer_cut_by_max_tokens_is_truncated(server, make_judge) -> None:
    results = make_judge(mode="single_call", max_tokens=20).score_batch(make_requests(1))
    assert results[0].reason == "truncated" and results[0].scores is None


def test_answer_that_fits_is_still_read(server, make_judge) -> None:
    server.behaviour = ServerBehaviour(default_score=10.0)
    results = make_judge(mode="per_dimension", max_tokens=2).score_batch(make_requests(1))
    assert results[0].valid and set(results[0].scores.values()) == {10.0}


@pytest.mark.parametrize(
    ("finish", "reason"), [("length", "truncated"), ("tool_calls", "unfinished"), ("abort", "unfinished")]
)
@pytest.mark.parametrize("mode", ["single_call", "per_dimension"])
def test_complete_answer_with_abnormal_finish_reason_is_masked(server, make_judge, mode, finish, reason) -> None:
    server.behaviour = ServerBehaviour(rules=[Rule(match="sample-1:", finish_reason=finish)])
    results = make_judge(mode=mode).score_batch(make_requests(3))
    assert [r.valid for r in results] == [True, False, True]
    assert results[1].reason == reason and results[1].scores is None


def test_content_filter_finish_with_a_complete_answer_is_refused(server, make_judge) -> None:
    server.behaviour = ServerBehaviour(rules=[Rule(finish_reason="content_filter")])
    results = make_judge(mode="single_call").score_batch(make_requests(1))
    assert results[0].reason == "refused"


def test_finish_reasons() -> None:
    assert finish_failure("stop") is None
    assert finish_failure("length") == "truncated"
    assert finish_failure("content_filter") == "refused"
    assert finish_failure(None) == "unfinished"
    assert {"truncated", "unfinished"} <= set(FAILURE_REASONS)


@pytest.mark.parametrize("text", ["07", "00", "01.5", "7.", ".5", "+7", "10.01", "１０", "7e0"])
def test_number_grammar_rejects_incomplete_or_non_canonical(text: str) -> None:
    assert parse_number_answer(text) is None


def test_cli_per_dimension_max_tokens_one_is_invalid_truncated(server, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    server.behaviour = ServerBehaviour(default_score=10.0)
    rows = write_rows(tmp_path, 2)
    out = tmp_path / "scores.jsonl"
    assert run_judge(server, rows, out, "--mode", "per_dimension", "max_tokens=1", "max_retries=0") == 0
    output = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(row["valid"], row["reason"]) for row in output] == [(False, "truncated")] * 2
    assert all(set(row["scores"].values()) == {None} for row in output)
