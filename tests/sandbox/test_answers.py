from __future__ import annotations

import pytest

from easyr1.sandbox import (
    SceneDoc,
    generate_row,
    score_answer,
    score_preliminary,
    score_re_edit,
    summarize_rewards,
)


def test_demonstration_vs_doing_nothing(mixed_rows):
    records = [{"scene_json": r.doc.to_json(), "demonstration": r.demonstration} for r in mixed_rows]
    summary = summarize_rewards(records)
    assert summary.rows == len(mixed_rows)
    assert summary.demonstration_mean == 10.0
    assert summary.do_nothing_mean < 7.0
    assert all(v < 10.0 for v in summary.per_dimension_do_nothing.values())


def test_answer_forms(mixed_rows):
    row = mixed_rows[0]
    demo = score_answer(row.doc, row.demonstration)
    assert demo.mean == 10.0 and demo.re_edit == "; ".join(row.re_edits)
    # no Re_edit at all: judged as doing nothing, and said so
    none = score_answer(row.doc, "<CoT>All good.</CoT>")
    assert none.re_edit is None and none.scores == score_preliminary(row.doc).scores
    # the JSON form the reward rules tolerate
    as_json = score_answer(row.doc, '{"Re_Edit": "' + "; ".join(row.re_edits) + '"}')
    assert as_json.mean == 10.0
    # garbage inside the tags: executed, nothing understood, reported
    garbage = score_answer(row.doc, "<CoT>x</CoT>\n<Re_edit>Improve the image</Re_edit>")
    assert garbage.unparsed == ["Improve the image"] and garbage.mean == score_preliminary(row.doc).mean


def test_inputs_accepted(mixed_rows):
    row = mixed_rows[3]
    text = row.doc.to_json()
    expected = score_re_edit(row.doc, "; ".join(row.re_edits)).scores
    assert score_re_edit(text, "; ".join(row.re_edits)).scores == expected
    assert score_re_edit({"scene_json": text}, "; ".join(row.re_edits)).scores == expected
    final = SceneDoc.from_json(score_re_edit(text, "; ".join(row.re_edits)).final_scene_json)
    assert final.stage == "final" and final.applied
    with pytest.raises(ValueError, match="scene_json"):
        score_re_edit({}, "x")


def test_grpo_group_has_a_spread():
    """Typical sampled answers of one prompt get different rewards: GRPO has a gradient."""
    row = next(r for r in (generate_row(2, i) for i in range(50)) if len(r.defects) == 3)
    answers = [
        "; ".join(row.re_edits),
        "; ".join(row.re_edits[:-1]),
        row.re_edits[0],
        "Fix everything",
    ]
    rewards = [score_re_edit(row.doc, a).mean for a in answers]
    assert rewards == sorted(rewards, reverse=True)
    assert len(set(rewards)) == len(rewards)
    assert rewards[0] - rewards[-1] > 3.0
