"""Property tests: ranges, weight normalisation, batch independence, and the seed scan against its regex."""

from __future__ import annotations

import math
import re

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from easyr1.config import DIMENSIONS
from easyr1.core.registries import STRATEGIES as STRATEGY_REGISTRY
from easyr1.reward import combine, extract_re_edit, format_report, improvement, normalise_weights
from easyr1.reward.format_rule import seed_blocks

STRATEGIES = STRATEGY_REGISTRY.names()
WEIGHTED = [name for name in STRATEGIES if STRATEGY_REGISTRY.facts(name).uses_weights]

judge_value = st.floats(min_value=0.0, max_value=10.0, allow_nan=False)
format_value = st.floats(min_value=0.0, max_value=5.0, allow_nan=False)
weight_value = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)


@st.composite
def score_batches(draw, min_size=1, max_size=8):
    size = draw(st.integers(min_size, max_size))
    judge = {
        d: torch.tensor(draw(st.lists(judge_value, min_size=size, max_size=size)), dtype=torch.float64)
        for d in DIMENSIONS
    }
    fmt = torch.tensor(draw(st.lists(format_value, min_size=size, max_size=size)), dtype=torch.float64)
    return judge, fmt


@st.composite
def weight_maps(draw):
    weights = {k: draw(weight_value) for k in (*DIMENSIONS, "format")}
    if sum(weights[d] for d in DIMENSIONS) < 1e-3:
        weights[draw(st.sampled_from(DIMENSIONS))] = 1.0
    return weights


@settings(max_examples=150, deadline=None)
@given(score_batches(), weight_maps(), st.sampled_from(STRATEGIES), format_value, st.tuples(weight_value, weight_value))
def test_valid_inputs_give_rewards_in_range(batch, weights, strategy, gate, md_weights):
    judge, fmt = batch
    if sum(md_weights) <= 0:
        md_weights = (0.8, 0.2)
    reward, valid = combine(
        judge, fmt, strategy, weights=weights, gate_threshold=gate, max_deviation_weights=md_weights
    )
    assert bool(valid.all())
    assert bool(((reward >= -1e-9) & (reward <= 10 + 1e-9)).all())


@settings(max_examples=100, deadline=None)
@given(score_batches(), weight_maps(), st.floats(min_value=1e-3, max_value=1e3), st.sampled_from(WEIGHTED))
def test_scaling_all_weights_changes_nothing(batch, weights, factor, strategy):
    judge, fmt = batch
    first, _ = combine(judge, fmt, strategy, weights=weights)
    second, _ = combine(judge, fmt, strategy, weights={k: v * factor for k, v in weights.items()})
    torch.testing.assert_close(first, second, rtol=1e-9, atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(weight_maps())
def test_normalised_weights_sum_to_one(weights):
    normalised = normalise_weights(weights)
    assert math.isclose(sum(normalised.values()), 1.0, rel_tol=1e-12)
    assert all(v >= 0 for v in normalised.values())


@settings(max_examples=60, deadline=None)
@given(score_batches(), st.sampled_from((*DIMENSIONS, "format")))
def test_one_hot_weights_pick_one_score(batch, key):
    judge, fmt = batch
    weights = {**dict.fromkeys((*DIMENSIONS, "format"), 0.0), key: 1.0}
    reward, _ = combine(judge, fmt, "weighted_sum", weights=weights)
    torch.testing.assert_close(reward, 2 * fmt if key == "format" else judge[key])


@settings(max_examples=80, deadline=None)
@given(score_batches(min_size=2), st.sampled_from(STRATEGIES), st.data())
def test_masking_is_per_sample(batch, strategy, data):
    judge, fmt = batch
    size = fmt.shape[0]
    broken = data.draw(st.integers(0, size - 1))
    where = data.draw(st.sampled_from((*DIMENSIONS, "format")))
    if where == "format":
        fmt = fmt.clone()
        fmt[broken] = math.nan
    else:
        judge = {**judge, where: judge[where].clone()}
        judge[where][broken] = math.nan
    reward, valid = combine(judge, fmt, strategy)
    assert valid.tolist() == [i != broken for i in range(size)]
    assert math.isnan(reward[broken].item())
    # The other samples are exactly what they would be alone.
    for i in range(size):
        if i != broken:
            alone, _ = combine({d: judge[d][i : i + 1] for d in DIMENSIONS}, fmt[i : i + 1], strategy)
            assert math.isclose(reward[i].item(), alone.item(), rel_tol=1e-12, abs_tol=1e-12)


@settings(max_examples=80, deadline=None)
@given(score_batches(), score_batches(), st.sampled_from(STRATEGIES))
def test_improvement_stays_in_range(final, preliminary, strategy):
    size = min(final[1].shape[0], preliminary[1].shape[0])
    cut = lambda scores: {d: v[:size] for d, v in scores.items()}  # noqa: E731
    reward, valid = improvement(cut(final[0]), cut(preliminary[0]), final[1][:size], strategy)
    assert bool(valid.all())
    assert bool(((reward >= -1e-9) & (reward <= 10 + 1e-9)).all())


# Text made of tag fragments, so that nesting, unclosed tags and case variants come up often.
FRAGMENTS = [
    "<CoT>",
    "</CoT>",
    "<Re_edit>",
    "</Re_edit>",
    "<cot>",
    "</RE_EDIT>",
    "a",
    "fix it",
    " ",
    "\n",
    "\t",
    "{",
    "Re_Edit:",
]
answers = st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join)


@settings(max_examples=300, deadline=None)
@given(answers)
def test_seed_scan_equals_the_reference_regex(text):
    pattern = re.compile(r"<CoT>.*?</CoT>|<Re_edit>.*?</Re_edit>", re.DOTALL)
    expected = [(m.start(), m.end()) for m in pattern.finditer(text)]
    assert [(b.start, b.end) for b in seed_blocks(text, ("CoT", "Re_edit"))] == expected
    for name in ("CoT", "Re_edit"):
        bodies = re.findall(rf"<{name}>(.*?)</{name}>", text, re.DOTALL)
        assert [b.body for b in seed_blocks(text, (name,))] == bodies


@settings(max_examples=300, deadline=None)
@given(st.one_of(answers, st.text(max_size=200)))
def test_format_scores_stay_on_the_half_point_scale(text):
    for mode in ("seed", "strict"):
        report = format_report(text, mode=mode)
        assert 0.0 <= report.score <= 5.0
        assert (report.score * 2) == int(report.score * 2)
        assert report.passed or (report.score == 0.0 and report.failure is not None)


@settings(max_examples=300, deadline=None)
@given(st.one_of(answers, st.text(max_size=200)))
def test_extracted_instruction_is_clean(text):
    instruction = extract_re_edit(text)
    if instruction is not None:
        assert instruction and instruction == instruction.strip()
        assert "\n" not in instruction and "  " not in instruction
