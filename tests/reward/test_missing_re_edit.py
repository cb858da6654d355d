"""What happens to an answer without a Re_edit: the configured policy decides, and the decision says so."""

from __future__ import annotations

import pytest

from easyr1.config import RewardConfig
from easyr1.reward import EditAction, decide_edit, parse_response

GOOD = "<CoT>a</CoT>\n<Re_edit>Move the shadow left.</Re_edit>"
BAD = "I would move the shadow."


@pytest.mark.parametrize("policy", ["zero_reward", "skip_edit", "fallback_instruction"])
def test_a_parsed_instruction_is_always_edited(policy):
    decision = decide_edit(parse_response(GOOD), policy)
    assert decision.action is EditAction.EDIT
    assert decision.instruction == "Move the shadow left."
    assert not decision.missing and not decision.fallback


def test_zero_reward():
    decision = decide_edit(parse_response(BAD), "zero_reward")
    assert (decision.action, decision.instruction, decision.missing) == (EditAction.ZERO_REWARD, None, True)


def test_skip_edit():
    decision = decide_edit(parse_response(BAD), "skip_edit")
    assert (decision.action, decision.instruction, decision.missing) == (EditAction.SKIP_EDIT, None, True)


def test_fallback_instruction_is_the_reference_behaviour_and_is_flagged():
    decision = decide_edit(parse_response(BAD), "fallback_instruction", fallback_instruction="Fix it.")
    assert decision.action is EditAction.EDIT and decision.instruction == "Fix it."
    assert decision.missing and decision.fallback
    with pytest.raises(ValueError, match="non-empty"):
        decide_edit(None, "fallback_instruction", fallback_instruction="  ")


def test_accepts_the_extracted_string_too():
    assert decide_edit("Do it.", "zero_reward").instruction == "Do it."
    assert decide_edit(None, "skip_edit").action is EditAction.SKIP_EDIT
    assert decide_edit("   ", "zero_reward").action is EditAction.ZERO_REWARD


def test_unknown_policy_and_config_default():
    with pytest.raises(ValueError, match="unknown missing_re_edit"):
        decide_edit(None, "ignore")
    config = RewardConfig()
    decision = decide_edit(None, config.missing_re_edit, fallback_instruction=config.fallback_instruction)
    assert decision.action is EditAction.ZERO_REWARD
    assert EditAction.ZERO_REWARD.value == "zero_reward"
