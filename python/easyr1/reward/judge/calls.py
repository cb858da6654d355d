"""What one judge call is made of and ends as: the prepared call, its outcome, a sample's progress, and the
reading of a chat-completion body (a plain dict) into scores or a failure reason."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .parsing import expected_score, finish_failure, looks_like_refusal, parse_json_answer, parse_number_answer
from .protocol import JudgeResult

logger = logging.getLogger(__name__)

ResultCallback = Callable[[int, JudgeResult], None]
"""``on_result(index, result)``: called on the judge's loop thread as each sample finishes."""


@dataclass
class Call:
    """One chat completion: a single dimension (``per_dimension``) or all five (``dimension=None``)."""

    dimension: str | None
    kwargs: dict[str, Any]
    cache_key: str | None
    estimated_tokens: int
    body: bytes = b""
    """``kwargs`` serialised once, images spliced in as pre-encoded JSON strings: the SDK sends these bytes as
    they are, on the first attempt, on its retries and on every outage round."""


@dataclass
class Outcome:
    scores: dict[str, float] | None
    reason: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    retry_after_s: float | None = None
    """The server's ``Retry-After`` on a failed call (the outage wait honours it)."""


class SampleProgress:
    """What a sample's calls have done so far (kept for samples cut off by the deadline)."""

    def __init__(self) -> None:
        self.calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.first_start: float | None = None
        self.last_end: float | None = None
        self.waited_s = 0.0
        """Seconds this sample waited for the judge to come back (outage backoff)."""

    def started(self, t: float) -> None:
        self.calls += 1
        self.first_start = t if self.first_start is None else min(self.first_start, t)

    def ended(self, t: float, prompt_tokens: int, completion_tokens: int) -> None:
        self.last_end = t if self.last_end is None else max(self.last_end, t)
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens

    @property
    def latency_s(self) -> float:
        if self.first_start is None or self.last_end is None:
            return 0.0
        return self.last_end - self.first_start


def read_response(response: Any, dimension: str | None, use_logprobs: bool) -> Outcome:
    """Read the JSON body of a chat completion (a plain dict: skipping pydantic models saves CPU per call)."""
    if not isinstance(response, dict):
        return Outcome(None, "server_error")  # 200 without a JSON body (a proxy page, a broken server)
    usage = response.get("usage") or {}
    tokens = {
        "prompt_tokens": as_int(usage.get("prompt_tokens")),
        "completion_tokens": as_int(usage.get("completion_tokens")),
    }
    choices = response.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return Outcome(None, "unparsable", **tokens)
    choice = choices[0]
    message = choice.get("message") or {}
    if message.get("refusal"):
        return Outcome(None, "refused", **tokens)
    unfinished = finish_failure(choice.get("finish_reason"))
    if unfinished is not None:  # never read a cut answer: "1" of "10" parses as a valid 1
        return Outcome(None, unfinished, **tokens)
    content = message.get("content")
    if not isinstance(content, str):
        content = None
    if dimension is None:
        scores = parse_json_answer(content)
    else:
        score = parse_number_answer(content)
        if score is not None and use_logprobs:
            weighted = expected_score((choice.get("logprobs") or {}).get("content"))
            score = weighted if weighted is not None else score
        scores = None if score is None else {dimension: score}
    if scores is None:
        return Outcome(None, "refused" if looks_like_refusal(content) else "unparsable", **tokens)
    return Outcome(scores, None, **tokens)


def as_int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def report_to(on_result: ResultCallback, index: int, result: JudgeResult) -> None:
    try:
        on_result(index, result)
    except Exception:
        logger.exception("judge on_result callback failed")


def done_callback(on_result: ResultCallback, index: int) -> Callable[[asyncio.Task], None]:
    def callback(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is None:
            report_to(on_result, index, task.result())
        # cancelled or failed samples are reported once the batch is assembled

    return callback
