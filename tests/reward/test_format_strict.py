"""Strict mode: same scale as seed, the known hacks closed — each hack scores below an honest answer."""

from __future__ import annotations

import pytest
from corpus import HAND_MADE, honest, instr

from easyr1.reward import FormatRule, format_report, format_score

HONEST = honest("Move the tree's shadow to the right side.")


def strict(text: str, **kw) -> float:
    return format_score(text, mode="strict", **kw)


def seed(text: str, **kw) -> float:
    return format_score(text, mode="seed", **kw)


def test_strict_is_the_default_and_agrees_on_honest_answers():
    assert format_score(HONEST) == strict(HONEST) == seed(HONEST) == 5.0
    two = "<CoT>The sun is left.</CoT>\n<Re_edit>Move the shadow right.</Re_edit>\n<Re_edit>Dry the ground.</Re_edit>"
    assert strict(two) == seed(two) == 5.0


# (name, hack, failure reason in strict mode or None when it is penalised rather than failed)
HACKS = [
    ("empty_re_edit", "<CoT>The shadow is wrong.</CoT>\n<Re_edit></Re_edit>", "empty_block"),
    ("whitespace_re_edit", "<CoT>The shadow is wrong.</CoT>\n<Re_edit>   </Re_edit>", "empty_block"),
    ("punctuation_re_edit", "<CoT>The shadow is wrong.</CoT>\n<Re_edit>...</Re_edit>", "empty_block"),
    ("empty_cot", "<CoT></CoT>\n<Re_edit>Move the shadow right.</Re_edit>", "empty_block"),
    ("many_tiny_blocks", "<CoT>a</CoT>" + "\n<Re_edit>Fix.</Re_edit>" * 20, "too_many_blocks"),
    ("re_edit_hidden_in_cot", "<CoT>think <Re_edit>Fix the shadow.</Re_edit></CoT>", "nested_tags"),
    ("cot_hidden_in_re_edit", "<Re_edit>Fix <CoT>x</CoT> it</Re_edit>", "nested_tags"),
    ("unclosed_cot", "<CoT>a\n<CoT>The shadow is wrong.</CoT>\n<Re_edit>Fix it.</Re_edit>", "nested_tags"),
    (
        "lower_case_re_edit_smuggled_into_cot",
        "<CoT>fine <re_edit>Paint the sky red.</re_edit></CoT>\n<Re_edit>Fix it.</Re_edit>",
        "malformed_tags",
    ),
]


@pytest.mark.parametrize(("name", "hack", "reason"), HACKS, ids=[h[0] for h in HACKS])
def test_hacks_fail_strict_and_score_below_honest(name, hack, reason):
    report = format_report(hack, mode="strict")
    assert not report.passed and report.failure == reason, name
    assert report.score == 0.0 < strict(HONEST)
    # ...while the reference rewarded them (all of these pass its hard requirements).
    assert seed(hack) > 0.0


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (HONEST + "\n<CoT>more", "unclosed_tag"),
        ("<CoT>a</CoT>\n<Re_edit>Fix it.</Re_edit>\n</Re_edit>", "malformed_tags"),
        ("<CoT>a</CoT>\n<Re_edit>Fix it.</Re_edit>\n< CoT>b</CoT>", "malformed_tags"),
    ],
)
def test_broken_markup_names_its_reason(text, reason):
    assert format_report(text).failure == reason
    assert strict(text) == seed(text) == 0.0


def test_splitting_a_long_instruction_gains_nothing_beyond_two_blocks():
    content = instr(300)
    single = f"<CoT>a</CoT>\n<Re_edit>{content}</Re_edit>"
    split_two = f"<CoT>a</CoT>\n<Re_edit>{content[:150]}</Re_edit>\n<Re_edit>{content[150:]}</Re_edit>"
    split_six = "<CoT>a</CoT>" + "".join(f"\n<Re_edit>{content[i : i + 50]}</Re_edit>" for i in range(0, 300, 50))
    # Seed: splitting into short blocks erases the length penalty.
    assert (seed(single), seed(split_six)) == (2.5, 5.0)
    # Strict: the total is judged too (against 2 × the thresholds), so six blocks are no better than two...
    assert strict(split_six) == strict(split_two) == 3.5
    assert format_report(split_six).length_penalty == 1.5
    # ...and every split scores below a concise honest answer.
    assert strict(split_six) < strict(HONEST)


def test_total_length_factor_is_configurable():
    split_three = "<CoT>a</CoT>" + f"\n<Re_edit>{instr(45)}</Re_edit>" * 3  # total 135
    assert strict(split_three) == 4.5  # 135 ≤ 2 × 100
    assert strict(split_three, total_factor=1.0) == 3.5  # 135 ≤ 150
    with pytest.raises(ValueError, match="total_factor"):
        strict(split_three, total_factor=0.5)


def test_block_cap_is_configurable():
    eight = "<CoT>a</CoT>" + "\n<Re_edit>Fix the shadow.</Re_edit>" * 7
    nine = eight + "\n<Re_edit>Fix the shadow.</Re_edit>"
    assert strict(eight) == 4.5  # 8 blocks allowed; total 7 × 15 = 105 > 2 × 50 -> 0.5
    assert format_report(nine).failure == "too_many_blocks"
    assert strict(nine, max_blocks=9) > 0
    with pytest.raises(ValueError, match="max_blocks"):
        strict(eight, max_blocks=1)


def test_cot_may_span_lines_in_strict_only():
    text = (
        "<CoT>The sun is on the left,\nso the shadow must fall right.</CoT>\n<Re_edit>Move the shadow right.</Re_edit>"
    )
    assert strict(text) == 5.0
    assert seed(text) == 4.0
    # A Re_edit spanning lines still costs 1.0, and a CoT sharing its line with another block does too.
    assert strict("<CoT>a</CoT>\n<Re_edit>Move the\nshadow right.</Re_edit>") == 4.0
    assert strict("<CoT>a\nb</CoT> <Re_edit>Move the shadow.</Re_edit>") == 3.0


def test_length_is_measured_on_what_the_editor_receives():
    padded = "<CoT>a</CoT>\n<Re_edit>Fix" + " " * 60 + "it</Re_edit>"
    assert seed(padded) == 4.5  # 65 raw characters
    assert strict(padded) == 5.0  # "Fix it" once collapsed


def test_text_outside_blocks_and_missing_tags_still_fail():
    assert format_report("Sure! " + HONEST).failure == "text_outside_blocks"
    assert format_report("<CoT>a</CoT>").failure == "missing_tags"
    assert format_report('{"Re_Edit": "Fix the shadow."}').failure == "missing_tags"
    assert format_report("<cot>a</cot>\n<re_edit>b</re_edit>").failure == "malformed_tags"
    assert format_report("<CoT>a</CoT>\n<Re_edit type='x'>b</Re_edit>").failure == "malformed_tags"


def test_strict_never_exceeds_the_scale_on_the_corpus():
    for _, text, _ in HAND_MADE:
        assert 0.0 <= strict(text) <= 5.0


def test_format_rule_binds_settings_from_config():
    from easyr1.config import RewardConfig

    config = RewardConfig(format_mode="seed", re_edit_length_ideal=100, re_edit_length_acceptable=150)
    config.re_edit_length_tolerable = 200
    rule = FormatRule.from_config(config)
    assert rule.score(honest(instr(120))) == 4.5
    assert rule.report("<CoT>a</CoT>").failure == "missing_tags"
    with pytest.raises(ValueError):
        FormatRule(mode="nope")
