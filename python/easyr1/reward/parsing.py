"""Reading the policy's answer: the ``<CoT>`` reasoning and the ``<Re_edit>`` instructions for the editor.

Three forms are understood, tried in this order, the first that yields a non-empty instruction wins:

* ``tags``  — every ``<Re_edit>…</Re_edit>`` block (any letter case, may span lines);
* ``json``  — a JSON object with a ``"Re_Edit"`` key (any letter case; a string or a list of strings);
* ``colon`` — lines of the form ``Re_Edit: …`` (optionally bulleted or in bold).

Each instruction has its whitespace collapsed to single spaces; several are joined with ``"; "``. Empty blocks are
dropped. When nothing usable is found the result says so (``ok=False``, ``instruction=None``): what happens then
is the caller's decision (:mod:`easyr1.reward.missing`), never a silent default here.

This module judges nothing about the *format*; that is :mod:`easyr1.reward.format_rule`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

SEPARATOR = "; "
"""Joins several Re_edit instructions into the one instruction the editor receives."""

MAX_JSON_ATTEMPTS = 256
"""Bound on the ``{`` positions tried as JSON starts, so adversarial text cannot make parsing slow."""

Form = Literal["tags", "json", "colon"]


def _block_pattern(name: str) -> re.Pattern[str]:
    # The body may not contain another opening tag of the same name, so for "<X>a <X>b</X>" (an unclosed first
    # tag) the block found is the inner, closed one.
    opening = rf"<{name}(?:\s[^<>]*)?>"
    return re.compile(rf"{opening}((?:(?!<{name}[\s>]).)*?)</{name}\s*>", re.IGNORECASE | re.DOTALL)


_COT_BLOCK = _block_pattern("cot")
_RE_EDIT_BLOCK = _block_pattern("re_edit")
_TAG_MARKUP = re.compile(r"<\s*/?\s*(?:cot|re_edit)\b[^<>]*>", re.IGNORECASE)
_JSON_KEY_HINT = re.compile(r'"re[_\- ]?edit"\s*:', re.IGNORECASE)
_JSON_STRING_PAIR = re.compile(r'"re[_\- ]?edit"\s*:\s*"((?:[^"\\]|\\.)*)"', re.IGNORECASE | re.DOTALL)
_COLON_LINE = re.compile(
    r"^[ \t]*(?:[-*>#]+[ \t]*)?\**re[_\- ]?edit\**[ \t]*:\**[ \t]*(.*?)[ \t]*$", re.IGNORECASE | re.MULTILINE
)


@dataclass(frozen=True)
class ParsedResponse:
    """What could be read from one policy answer."""

    cot: list[str] = field(default_factory=list)
    """The reasoning blocks, whitespace-collapsed, empty ones dropped."""
    re_edits: list[str] = field(default_factory=list)
    """The re-edit instructions, whitespace-collapsed, empty ones dropped, in order."""
    instruction: str | None = None
    """``re_edits`` joined with ``"; "`` — what the editor receives — or ``None`` when there is none."""
    ok: bool = False
    """True when at least one non-empty Re_edit instruction was found."""
    form: Form | None = None
    """Which form the instruction came from; ``None`` when ``ok`` is False."""


def collapse_whitespace(text: str) -> str:
    """Runs of whitespace (newlines included) become one space; ends are trimmed."""
    return " ".join(text.split())


def _clean_block(body: str) -> str:
    # Stray CoT/Re_edit markup inside a block (nested or unclosed tags) is not instruction text.
    return collapse_whitespace(_TAG_MARKUP.sub(" ", body))


def _non_empty(items: list[str]) -> list[str]:
    return [item for item in items if item]


def _from_tags(text: str) -> tuple[list[str], list[str]]:
    cot = _non_empty([_clean_block(m.group(1)) for m in _COT_BLOCK.finditer(text)])
    re_edits = _non_empty([_clean_block(m.group(1)) for m in _RE_EDIT_BLOCK.finditer(text)])
    return cot, re_edits


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return _non_empty([collapse_whitespace(value)])
    if isinstance(value, list):
        return _non_empty([collapse_whitespace(v) for v in value if isinstance(v, str)])
    return []


def _normalised_key(key: str) -> str:
    return re.sub(r"[_\- ]", "", key.lower())


def _json_objects(text: str) -> list[dict[str, Any]]:
    """The JSON objects embedded in ``text`` (at most :data:`MAX_JSON_ATTEMPTS` start positions are tried)."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    position = text.find("{")
    attempts = 0
    while position != -1 and attempts < MAX_JSON_ATTEMPTS:
        attempts += 1
        try:
            value, end = decoder.raw_decode(text, position)
        except (json.JSONDecodeError, RecursionError):
            position = text.find("{", position + 1)
            continue
        if isinstance(value, dict):
            found.append(value)
        position = text.find("{", end)
    return found


def _from_json(text: str) -> tuple[list[str], list[str]]:
    if not _JSON_KEY_HINT.search(text):
        return [], []
    cot: list[str] = []
    re_edits: list[str] = []
    for obj in _json_objects(text):
        for key, value in obj.items():
            if not isinstance(key, str):
                continue
            name = _normalised_key(key)
            if name == "reedit":
                re_edits.extend(_strings(value))
            elif name == "cot":
                cot.extend(_strings(value))
    if re_edits:
        return cot, re_edits
    # Broken JSON (trailing commas, single object cut off): take the quoted value after the key.
    for match in _JSON_STRING_PAIR.finditer(text):
        raw = match.group(1)
        try:
            value = json.loads(f'"{raw}"')
        except json.JSONDecodeError:
            value = raw
        re_edits.extend(_strings(value))
    return cot, re_edits


def _from_colon_lines(text: str) -> list[str]:
    values = []
    for match in _COLON_LINE.finditer(text):
        value = match.group(1).strip().rstrip(",").strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values.append(collapse_whitespace(value))
    return _non_empty(values)


def parse_response(text: str) -> ParsedResponse:
    """Read the reasoning and the re-edit instructions from one answer (see the module docstring)."""
    cot, re_edits = _from_tags(text)
    form: Form | None = "tags" if re_edits else None
    if not re_edits:
        json_cot, re_edits = _from_json(text)
        if re_edits:
            form = "json"
            cot = cot or json_cot
    if not re_edits:
        re_edits = _from_colon_lines(text)
        if re_edits:
            form = "colon"
    if not re_edits:
        return ParsedResponse(cot=cot)
    return ParsedResponse(cot=cot, re_edits=re_edits, instruction=SEPARATOR.join(re_edits), ok=True, form=form)


def extract_re_edit(text: str) -> str | None:
    """The instruction for the editor (all Re_edit instructions joined with ``"; "``), or ``None``."""
    return parse_response(text).instruction
