"""Seed mode reproduces the reference format score on a corpus of hand-made and generated answers."""

from __future__ import annotations

import pytest
from corpus import HAND_MADE, generated_cases, honest, instr

from easyr1.reward import extract_re_edit, format_report, format_score

GENERATED = generated_cases()


def test_corpus_is_large_and_varied():
    assert len(HAND_MADE) + len(GENERATED) >= 200
    assert len({name for name, _, _ in HAND_MADE}) == len(HAND_MADE)
    # The generator reaches every score level and both outcomes of the hard requirements.
    expected = {case.expected_seed for case in GENERATED}
    assert {0.0, 5.0, 4.5, 4.0, 3.5, 2.5}.issubset(expected)
    assert sum(case.expected_seed > 0 for case in GENERATED) >= 60
    assert sum(case.expected_seed == 0 for case in GENERATED) >= 30


@pytest.mark.parametrize(("name", "text", "expected"), HAND_MADE, ids=[c[0] for c in HAND_MADE])
def test_hand_made_seed_scores(name, text, expected):
    assert format_score(text, mode="seed") == pytest.approx(expected, abs=1e-12), name


@pytest.mark.parametrize("index", range(len(GENERATED)))
def test_generated_seed_scores(index):
    case = GENERATED[index]
    assert format_score(case.text, mode="seed") == pytest.approx(case.expected_seed, abs=1e-12), repr(case.text)


@pytest.mark.parametrize("index", range(len(GENERATED)))
def test_generated_extraction(index):
    case = GENERATED[index]
    assert extract_re_edit(case.text) == case.expected_instruction, repr(case.text)


def test_thresholds_are_configurable():
    # The reference run used 100/150/200.
    settings = {"mode": "seed", "ideal": 100, "acceptable": 150, "tolerable": 200}
    assert format_score(honest(instr(100)), **settings) == 5.0
    assert format_score(honest(instr(120)), **settings) == 4.5
    assert format_score(honest(instr(180)), **settings) == 3.5
    assert format_score(honest(instr(201)), **settings) == 2.5


def test_bad_thresholds_are_rejected():
    with pytest.raises(ValueError, match="ideal <= acceptable <= tolerable"):
        format_score(honest(), mode="seed", ideal=100, acceptable=50)
    with pytest.raises(ValueError, match="unknown format mode"):
        format_score(honest(), mode="lenient")


def test_report_explains_the_score():
    text = f"<CoT>a</CoT> <Re_edit>{instr(60)}</Re_edit>\n<Re_edit>{instr(80)}</Re_edit>"
    report = format_report(text, mode="seed")
    assert report.passed and report.failure is None
    assert (report.cot_blocks, report.re_edit_blocks) == (1, 2)
    assert report.re_edit_average_length == 70
    assert report.re_edit_total_length == 140
    assert report.length_penalty == 0.5
    assert report.line_violations == 2
    assert report.score == 2.5

    assert format_report("Sure! " + honest(), mode="seed").failure == "text_outside_blocks"
    assert format_report("<CoT>a</CoT>", mode="seed").failure == "missing_tags"
