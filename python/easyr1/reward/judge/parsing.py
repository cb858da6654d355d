"""Strict reading of judge answers. Anything that is not exactly what was asked for is ``None`` (invalid)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .protocol import DIMENSIONS

SCORE_MIN, SCORE_MAX = 0.0, 10.0
_NUMBER = re.compile(r"\s*((?:10|[0-9])(?:\.[0-9]+)?)\s*")
"""The per-dimension grammar: optional whitespace, an integer 0-10 without leading zeros, an optional fraction of one
or more digits, optional whitespace (then the range check: at most 10)."""
NORMAL_FINISH_REASONS = frozenset({"stop"})
"""``finish_reason`` values of an answer the model ended itself; any other value (or none) is never read."""
_REFUSAL_OPENINGS = (
    "i'm sorry",
    "i am sorry",
    "sorry,",
    "i can't",
    "i cannot",
    "i can not",
    "i'm unable",
    "i am unable",
    "i won't",
    "i will not",
)
MIN_SCORE_PROBABILITY_MASS = 0.5
"""Below this total probability on score tokens the expected score is not trusted (the sampled number is used)."""


def finish_failure(finish_reason: object) -> str | None:
    """The failure reason of an answer's ``finish_reason``; ``None`` for a normal stop.

    ``length`` (cut off by ``max_tokens``) is ``truncated``, ``content_filter`` is ``refused``, anything else that
    is not ``stop`` (``tool_calls``, ``abort``, a missing value) is ``unfinished``: a cut answer such as ``"1"`` of
    ``"10"`` can look complete, so the text is not read at all.
    """
    if finish_reason in NORMAL_FINISH_REASONS:
        return None
    if finish_reason == "length":
        return "truncated"
    if finish_reason == "content_filter":
        return "refused"
    return "unfinished"


def parse_number_answer(text: str | None) -> float | None:
    """A bare number in [0, 10] (``"7"``, ``" 6.5 "``, ``"10.0"``); ``None`` for anything else (words, ``7/10``,
    ``**7**``, ``07``, ``7.``, ``10.5``)."""
    if text is None:
        return None
    match = _NUMBER.fullmatch(text)
    if match is None:
        return None
    value = float(match.group(1))
    return value if SCORE_MIN <= value <= SCORE_MAX else None


def _valid_score(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and SCORE_MIN <= value <= SCORE_MAX
    )


def parse_json_answer(text: str | None) -> dict[str, float] | None:
    """The ``single_call`` JSON: exactly the five dimensions, each exactly ``{"reason": str, "score": number}``."""
    if text is None:
        return None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(data, dict) or set(data) != set(DIMENSIONS):
        return None
    scores: dict[str, float] = {}
    for dimension in DIMENSIONS:
        item = data[dimension]
        if not isinstance(item, dict) or set(item) != {"reason", "score"}:
            return None
        if not isinstance(item["reason"], str) or not _valid_score(item["score"]):
            return None
        scores[dimension] = float(item["score"])
    return scores


def looks_like_refusal(text: str | None) -> bool:
    """True for answers that open like a refusal ("I'm sorry, I can't help with that")."""
    if not text:
        return False
    opening = text.strip().lower().replace("\u2019", "'")
    return opening.startswith(_REFUSAL_OPENINGS)


def _token(entry: Any) -> str:
    return entry["token"] if isinstance(entry, Mapping) else entry.token


def _logprob(entry: Any) -> float:
    return float(entry["logprob"] if isinstance(entry, Mapping) else entry.logprob)


def _top(entry: Any) -> Sequence[Any]:
    top = entry.get("top_logprobs") if isinstance(entry, Mapping) else getattr(entry, "top_logprobs", None)
    return top or ()


def expected_score(content: Sequence[Any] | None) -> float | None:
    """Probability-weighted score Σ p(s)·s over the integer score tokens 0..10 of the answer's first token,
    renormalised (G-Eval). ``content`` is ``choice.logprobs.content`` (SDK objects or plain dicts).

    Tokenizers that split numbers into digits (Qwen, Llama) give "10" as "1" then "0": when the sampled first token
    is "1", the probability of "0" at the next position splits p("1") between 1 and 10. When the answer starts
    with another digit, p("1") cannot be split and counts as 1 (a small downward bias documented in docs/judge.md).
    Returns ``None`` when there are no logprobs or the score tokens carry less than
    :data:`MIN_SCORE_PROBABILITY_MASS`.
    """
    if not content:
        return None
    position = next((i for i, entry in enumerate(content) if _token(entry).strip()), None)
    if position is None:
        return None
    mass: dict[int, float] = {}
    for candidate in _top(content[position]):
        token = _token(candidate).strip()
        if token.isdigit() and 0 <= int(token) <= 10 and token == str(int(token)):
            mass[int(token)] = mass.get(int(token), 0.0) + math.exp(_logprob(candidate))
    if _token(content[position]).strip() == "1" and position + 1 < len(content) and mass.get(1):
        p_zero = sum(math.exp(_logprob(c)) for c in _top(content[position + 1]) if _token(c) == "0")
        p_one = mass[1]
        mass[1] = p_one * (1.0 - p_zero)
        mass[10] = mass.get(10, 0.0) + p_one * p_zero
    total = sum(mass.values())
    if total < MIN_SCORE_PROBABILITY_MASS:
        return None
    return sum(score * p for score, p in mass.items()) / total
