"""What the driver does with an answer: edit with its instruction, or — when no Re_edit was found — follow the
``worker.reward.missing_re_edit`` policy. The caller counts every decision whose ``missing`` is True."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .parsing import ParsedResponse

MISSING_RE_EDIT_POLICIES: tuple[str, ...] = ("zero_reward", "skip_edit", "fallback_instruction")


class EditAction(str, enum.Enum):
    EDIT = "edit"
    """Send ``instruction`` to the editor, then judge the result."""
    SKIP_EDIT = "skip_edit"
    """Do not edit; judge the preliminary image as it is."""
    ZERO_REWARD = "zero_reward"
    """Neither edit nor judge; the sample's reward is 0 (a valid outcome, not a masked failure)."""


@dataclass(frozen=True)
class EditDecision:
    action: EditAction
    instruction: str | None
    """The editor instruction for ``EDIT``; ``None`` otherwise."""
    missing: bool
    """True when the answer had no Re_edit (the policy decided); the caller counts these."""
    fallback: bool = False
    """True when ``instruction`` is the configured fallback rather than the policy's own words."""


def decide_edit(
    parsed: ParsedResponse | str | None,
    policy: str,
    *,
    fallback_instruction: str = "Improve the image quality and consistency",
) -> EditDecision:
    """Decide from a parse result (or the extracted instruction) and the ``missing_re_edit`` policy."""
    if policy not in MISSING_RE_EDIT_POLICIES:
        raise ValueError(f"unknown missing_re_edit policy {policy!r}; expected one of {MISSING_RE_EDIT_POLICIES}")
    instruction = parsed.instruction if isinstance(parsed, ParsedResponse) else parsed
    if instruction is not None and instruction.strip():
        return EditDecision(EditAction.EDIT, instruction, missing=False)
    if policy == "fallback_instruction":
        if not fallback_instruction.strip():
            raise ValueError("missing_re_edit=fallback_instruction needs a non-empty fallback_instruction")
        return EditDecision(EditAction.EDIT, fallback_instruction, missing=True, fallback=True)
    if policy == "skip_edit":
        return EditDecision(EditAction.SKIP_EDIT, None, missing=True)
    return EditDecision(EditAction.ZERO_REWARD, None, missing=True)
