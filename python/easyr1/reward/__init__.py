"""Reward rules: reading the policy's answer, the format score, and combining judge and format scores.

* :func:`parse_response` / :func:`extract_re_edit` — the ``<CoT>`` and ``<Re_edit>`` blocks (or JSON / colon forms);
* :func:`format_score` / :func:`format_report` / :class:`FormatRule` — the 0–5 format score, ``strict`` or ``seed``;
* :func:`decide_edit` — what to do when no Re_edit was found (``worker.reward.missing_re_edit``);
* :func:`combine` / :func:`improvement` / :func:`combine_with_config` — the four strategies, on 0–10, with a mask.

This package stays light: it does not import the judge client (``easyr1.reward.judge``), and torch is imported
only when a combination function is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .format_rule import FAILURE_REASONS, MODES, FormatReport, FormatRule, format_report, format_score, length_penalty
from .missing import MISSING_RE_EDIT_POLICIES, EditAction, EditDecision, decide_edit
from .parsing import SEPARATOR, ParsedResponse, collapse_whitespace, extract_re_edit, parse_response

if TYPE_CHECKING:
    from .combination import (
        DEFAULT_WEIGHTS,
        WEIGHT_KEYS,
        combine,
        combine_with_config,
        improvement,
        improvement_reward,
        max_deviation_dimension,
        normalise_weights,
    )

_LAZY = {
    "DEFAULT_WEIGHTS",
    "WEIGHT_KEYS",
    "combine",
    "combine_with_config",
    "improvement",
    "improvement_reward",
    "max_deviation_dimension",
    "normalise_weights",
}

__all__ = [
    "DEFAULT_WEIGHTS",
    "FAILURE_REASONS",
    "MISSING_RE_EDIT_POLICIES",
    "MODES",
    "SEPARATOR",
    "WEIGHT_KEYS",
    "EditAction",
    "EditDecision",
    "FormatReport",
    "FormatRule",
    "ParsedResponse",
    "collapse_whitespace",
    "combine",
    "combine_with_config",
    "decide_edit",
    "extract_re_edit",
    "format_report",
    "format_score",
    "improvement",
    "improvement_reward",
    "length_penalty",
    "max_deviation_dimension",
    "normalise_weights",
    "parse_response",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(".combination", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
