"""The format score (0–5) of one policy answer, in two modes.

``seed`` reproduces the reference implementation's arithmetic exactly (including its holes):

1. The answer is stripped of leading/trailing whitespace.
2. Hard requirements, else the score is 0: at least one ``<CoT>…</CoT>`` and one ``<Re_edit>…</Re_edit>`` block
   (exact letter case; found independently of each other), and nothing but whitespace outside the blocks found by
   one left-to-right scan for either kind (so a Re_edit block hidden inside a CoT block still counts as present).
3. Score = 5 − length penalty − 1.0 per block (of that scan) that does not stand alone on its line or spans lines;
   floor 0. Length penalty by the *average* Re_edit length (each block's body with its ends stripped, in
   characters): ≤ ideal → 0, ≤ acceptable → 0.5, ≤ tolerable → 1.5, else 2.5.

``strict`` (the default) keeps the scale and closes the known hacks; the differences are listed in
``docs/reward.md`` and in :func:`_strict_report`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from .parsing import collapse_whitespace

Mode = Literal["strict", "seed"]
MODES: tuple[str, ...] = ("strict", "seed")
MAX_SCORE = 5.0
LINE_PENALTY = 1.0
LENGTH_PENALTIES = (0.0, 0.5, 1.5, 2.5)
"""Penalty when the length is ≤ ideal, ≤ acceptable, ≤ tolerable, longer."""

FAILURE_REASONS = (
    "missing_tags",
    "text_outside_blocks",
    "malformed_tags",
    "nested_tags",
    "unclosed_tag",
    "empty_block",
    "too_many_blocks",
)
"""Why the hard requirements failed; the seed mode only ever reports the first two."""

SEED_TAGS = ("CoT", "Re_edit")
_ANY_MARKER = re.compile(r"<\s*/?\s*(?:cot|re_edit)\b[^<>]*>", re.IGNORECASE)
_CANONICAL_MARKERS = {
    "<CoT>": ("CoT", True),
    "</CoT>": ("CoT", False),
    "<Re_edit>": ("Re_edit", True),
    "</Re_edit>": ("Re_edit", False),
}
_WORD = re.compile(r"\w")


@dataclass(frozen=True)
class FormatReport:
    """The format score with everything that went into it (for logs and failure counts)."""

    score: float
    """0–5."""
    passed: bool
    """Whether the hard requirements held."""
    failure: str | None
    """One of :data:`FAILURE_REASONS` when ``passed`` is False."""
    mode: str
    cot_blocks: int
    re_edit_blocks: int
    re_edit_average_length: float
    """Seed: average of each body stripped; strict: average of each body whitespace-collapsed."""
    re_edit_total_length: int
    length_penalty: float
    line_violations: int
    """Blocks not alone on their line (or, where not allowed, spanning lines); each costs 1.0."""


@dataclass(frozen=True)
class TagBlock:
    """One tag block: its name, where it starts and ends in the (stripped) answer, and its body."""

    name: str
    start: int
    end: int
    body: str


def _check_thresholds(ideal: float, acceptable: float, tolerable: float) -> None:
    if not (0 <= ideal <= acceptable <= tolerable):
        raise ValueError(
            f"length thresholds must satisfy 0 <= ideal <= acceptable <= tolerable, got {ideal}, {acceptable}, "
            f"{tolerable}"
        )


def length_penalty(length: float, ideal: float, acceptable: float, tolerable: float) -> float:
    """0, 0.5, 1.5 or 2.5 for a length ≤ ideal, ≤ acceptable, ≤ tolerable, longer."""
    for limit, penalty in zip((ideal, acceptable, tolerable), LENGTH_PENALTIES, strict=False):
        if length <= limit:
            return penalty
    return LENGTH_PENALTIES[-1]


def _not_alone(text: str, start: int, end: int, *, may_span: bool) -> bool:
    """True when the block ``text[start:end]`` shares a line with other text, or spans lines where not allowed."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    if line_end == -1:
        line_end = len(text)
    if text[line_start:start].strip() or text[end:line_end].strip():
        return True
    return not may_span and "\n" in text[start:end]


def _outside_is_blank(text: str, spans: list[tuple[int, int]]) -> bool:
    position = 0
    for start, end in spans:
        if text[position:start].strip():
            return False
        position = end
    return not text[position:].strip()


def seed_blocks(text: str, names: tuple[str, ...]) -> list[TagBlock]:
    """The blocks the reference finds: what ``re.finditer("<A>.*?</A>|<B>.*?</B>", text, re.DOTALL)`` returns for
    the tag names given, exact letter case — computed in linear time (that pattern is quadratic on answers full of
    unclosed tags)."""
    blocks: list[TagBlock] = []
    live = list(names)
    position = 0
    while live:
        starts = [(text.find(f"<{name}>", position), name) for name in live]
        starts = [(start, name) for start, name in starts if start != -1]
        if not starts:
            break
        start, name = min(starts)
        body_start = start + len(name) + 2
        close = text.find(f"</{name}>", body_start)
        if close == -1:
            # No closing tag after this opening one means none after any later one either.
            live.remove(name)
            continue
        end = close + len(name) + 3
        blocks.append(TagBlock(name, start, end, text[body_start:close]))
        position = end
    return blocks


def _failed(mode: str, reason: str, cot: int = 0, re_edit: int = 0) -> FormatReport:
    return FormatReport(0.0, False, reason, mode, cot, re_edit, 0.0, 0, 0.0, 0)


def _seed_report(text: str, ideal: float, acceptable: float, tolerable: float) -> FormatReport:
    text = text.strip()
    # The two kinds are found independently of each other and of the combined scan (a reference quirk kept:
    # a Re_edit block inside a CoT block counts as present).
    cot_bodies = [b.body for b in seed_blocks(text, ("CoT",))]
    re_edit_bodies = [b.body for b in seed_blocks(text, ("Re_edit",))]
    blocks = [(b.start, b.end) for b in seed_blocks(text, SEED_TAGS)]
    counts = (len(cot_bodies), len(re_edit_bodies))
    if not cot_bodies or not re_edit_bodies:
        return _failed("seed", "missing_tags", *counts)
    if not _outside_is_blank(text, blocks):
        return _failed("seed", "text_outside_blocks", *counts)
    lengths = [len(body.strip()) for body in re_edit_bodies]
    average = sum(lengths) / len(lengths)
    penalty = length_penalty(average, ideal, acceptable, tolerable)
    violations = sum(_not_alone(text, start, end, may_span=False) for start, end in blocks)
    score = max(0.0, MAX_SCORE - penalty - LINE_PENALTY * violations)
    return FormatReport(score, True, None, "seed", *counts, average, sum(lengths), penalty, violations)


def _strict_blocks(text: str) -> list[TagBlock] | str:
    """The tag blocks of ``text``, or the failure reason when the markup is not a flat sequence of exact tags."""
    blocks: list[TagBlock] = []
    open_name: str | None = None
    open_end = 0
    open_start = 0
    for marker in _ANY_MARKER.finditer(text):
        canonical = _CANONICAL_MARKERS.get(marker.group(0))
        if canonical is None:
            return "malformed_tags"
        name, opening = canonical
        if opening:
            if open_name is not None:
                return "nested_tags"
            open_name, open_start, open_end = name, marker.start(), marker.end()
        else:
            if open_name != name:
                return "malformed_tags"
            blocks.append(TagBlock(name, open_start, marker.end(), text[open_end : marker.start()]))
            open_name = None
    if open_name is not None:
        return "unclosed_tag"
    return blocks


def _strict_report(
    text: str, ideal: float, acceptable: float, tolerable: float, max_blocks: int, total_factor: float
) -> FormatReport:
    """Seed rules plus: every CoT/Re_edit marker in any letter case must be an exact, flat, closed tag; no empty
    block (a body needs a letter or digit); at most ``max_blocks`` blocks; length penalty = the larger of the
    average's and the total's (the total against the thresholds × ``total_factor``), lengths measured on the
    whitespace-collapsed body the editor receives; CoT blocks may span lines (Re_edit blocks may not)."""
    text = text.strip()
    found = _strict_blocks(text)
    if isinstance(found, str):
        return _failed("strict", found)
    cot = [b for b in found if b.name == "CoT"]
    re_edit = [b for b in found if b.name == "Re_edit"]
    counts = (len(cot), len(re_edit))
    if not cot or not re_edit:
        return _failed("strict", "missing_tags", *counts)
    if not _outside_is_blank(text, [(b.start, b.end) for b in found]):
        return _failed("strict", "text_outside_blocks", *counts)
    if any(not _WORD.search(b.body) for b in found):
        return _failed("strict", "empty_block", *counts)
    if len(found) > max_blocks:
        return _failed("strict", "too_many_blocks", *counts)
    lengths = [len(collapse_whitespace(b.body)) for b in re_edit]
    average = sum(lengths) / len(lengths)
    total = sum(lengths)
    penalty = max(
        length_penalty(average, ideal, acceptable, tolerable),
        length_penalty(total, ideal * total_factor, acceptable * total_factor, tolerable * total_factor),
    )
    violations = sum(_not_alone(text, b.start, b.end, may_span=b.name == "CoT") for b in found)
    score = max(0.0, MAX_SCORE - penalty - LINE_PENALTY * violations)
    return FormatReport(score, True, None, "strict", *counts, average, total, penalty, violations)


def format_report(
    text: str,
    *,
    mode: str = "strict",
    ideal: float = 50,
    acceptable: float = 100,
    tolerable: float = 150,
    max_blocks: int = 8,
    total_factor: float = 2.0,
) -> FormatReport:
    """The format score of ``text`` with its parts. ``max_blocks`` and ``total_factor`` apply to strict mode."""
    _check_thresholds(ideal, acceptable, tolerable)
    if mode == "seed":
        return _seed_report(text, ideal, acceptable, tolerable)
    if mode == "strict":
        if max_blocks < 2:
            raise ValueError(f"max_blocks must be at least 2 (one CoT, one Re_edit), got {max_blocks}")
        if total_factor < 1:
            raise ValueError(f"total_factor must be at least 1, got {total_factor}")
        return _strict_report(text, ideal, acceptable, tolerable, max_blocks, total_factor)
    raise ValueError(f"unknown format mode {mode!r}; expected one of {MODES}")


def format_score(
    text: str,
    *,
    mode: str = "strict",
    ideal: float = 50,
    acceptable: float = 100,
    tolerable: float = 150,
    max_blocks: int = 8,
    total_factor: float = 2.0,
) -> float:
    """The format score (0–5) of one answer; see the module docstring for the two modes."""
    return format_report(
        text,
        mode=mode,
        ideal=ideal,
        acceptable=acceptable,
        tolerable=tolerable,
        max_blocks=max_blocks,
        total_factor=total_factor,
    ).score


@dataclass(frozen=True)
class FormatRule:
    """The format score with its settings bound, e.g. from ``worker.reward``."""

    mode: str = "strict"
    ideal: float = 50
    acceptable: float = 100
    tolerable: float = 150
    max_blocks: int = 8
    total_factor: float = 2.0

    def __post_init__(self) -> None:
        format_report("", **self._settings())  # fail now, not on the first answer

    @classmethod
    def from_config(cls, config: Any) -> FormatRule:
        """Build from a :class:`easyr1.config.RewardConfig`."""
        return cls(
            mode=config.format_mode,
            ideal=config.re_edit_length_ideal,
            acceptable=config.re_edit_length_acceptable,
            tolerable=config.re_edit_length_tolerable,
            max_blocks=config.max_blocks,
            total_factor=config.re_edit_total_factor,
        )

    def _settings(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "ideal": self.ideal,
            "acceptable": self.acceptable,
            "tolerable": self.tolerable,
            "max_blocks": self.max_blocks,
            "total_factor": self.total_factor,
        }

    def report(self, text: str) -> FormatReport:
        return format_report(text, **self._settings())

    def score(self, text: str) -> float:
        return self.report(text).score
