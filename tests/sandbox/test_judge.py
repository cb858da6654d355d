from __future__ import annotations

import itertools
import json
from statistics import mean

import pytest
from PIL import Image

from easyr1.reward.judge.protocol import DIMENSIONS, Judge, JudgeRequest
from easyr1.sandbox import CATALOGUE, SandboxJudge, score_preliminary, score_re_edit
from easyr1.sandbox.rules import SEVERITY

BLANK = Image.new("RGB", (8, 8))


def _request(scene_json: str | None, key: str = "k") -> JudgeRequest:
    metadata = {} if scene_json is None else {"scene_json": scene_json}
    return JudgeRequest(source_image=BLANK, edited_image=BLANK, instruction="x", key=key, metadata=metadata)


def test_is_a_judge():
    assert isinstance(SandboxJudge(), Judge)


def test_source_and_ideal_scenes_score_ten(mixed_rows):
    for row in mixed_rows[:50]:
        assert score_re_edit(row.doc.with_scene(row.ideal, stage="final"), None).scores == dict.fromkeys(
            DIMENSIONS, 10.0
        )


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_each_defect_lowers_its_dimension_and_its_fix_restores_it(name, single_defect_rows):
    dim = CATALOGUE[name].dimension
    for row in single_defect_rows[name]:
        before = score_preliminary(row.doc).scores
        assert before[dim] <= 4.0, (row.id, before)
        assert before[dim] == min(before.values()), (row.id, before)  # the intended dimension is hit hardest
        after = score_re_edit(row.doc, "; ".join(row.re_edits)).scores
        assert after == dict.fromkeys(DIMENSIONS, 10.0), (row.id, row.re_edits, after)


WRONG_FIXES = {
    "shadow_wrong_side": "Cast the shadows to the {side}",
    "floating_object": "Raise the tree",
    "dry_ground_in_rain": "Dry the ground",
    "wet_ground_clear_sky": "Wet the ground",
    "summer_foliage_in_snow": "Make the tree green",
    "sun_at_night": "Add the moon",
    "lit_candle_underwater": "Light the candle",
    "wrong_decoration": "Add a pumpkin; Add a wreath; Add a lantern",
    "wrong_object_edited": "Restore the tree",
    "misplaced_object": "Restore the tree",
    "wrong_exposure": "Darken the scene; Brighten the scene",
}


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_a_wrong_or_empty_fix_does_not_restore(name, single_defect_rows):
    dim = CATALOGUE[name].dimension
    for row in single_defect_rows[name]:
        correct = score_re_edit(row.doc, "; ".join(row.re_edits)).scores[dim]
        before = score_preliminary(row.doc).scores[dim]
        for attempt in (WRONG_FIXES[name], "", "Improve the image quality and consistency"):
            got = score_re_edit(row.doc, attempt).scores[dim]
            assert got <= before + 1e-9 < correct, (row.id, attempt, got, before)


def test_undoing_the_requested_edit_is_penalised(single_defect_rows):
    """Fixing the inconsistency by throwing away the request costs more than it gains."""
    cases = {
        "dry_ground_in_rain": "Clear the sky",
        "wet_ground_clear_sky": "Make it rain",
        "sun_at_night": "Make it day",
        "floating_object": "Remove the {object}",
        "lit_candle_underwater": "Move the candle out of the pond",
        "wrong_decoration": "Remove the decoration; Remove the banner",
    }
    for name, text in cases.items():
        for row in single_defect_rows[name][:5]:
            args = row.doc.intent[0].args
            attempt = text.format(**args)
            demo = score_re_edit(row.doc, "; ".join(row.re_edits))
            undo = score_re_edit(row.doc, attempt)
            assert undo.unparsed == [] and undo.ignored == [], (attempt, undo.ignored)
            assert undo.scores["target_attribution"] < 5.0, (row.id, attempt, undo.scores)
            assert undo.mean < demo.mean - 1.0


def test_collateral_damage_is_penalised(single_defect_rows):
    for row in single_defect_rows["dry_ground_in_rain"][:5]:
        fixed = "; ".join(row.re_edits)
        movable = [o.kind for o in row.doc.source.objects if o.kind in ("box", "ball", "cone")]
        for extra in (f"Paint the {movable[0]} green", f"Remove the {movable[0]}", "Move the tree to the left"):
            if extra == f"Paint the {movable[0]} green" and row.doc.source.find(movable[0]).color == "green":
                extra = f"Paint the {movable[0]} blue"
            damaged = score_re_edit(row.doc, f"{fixed}; {extra}")
            assert damaged.unparsed == []
            assert damaged.scores["target_attribution"] < 7.0, (extra, damaged.scores)
            assert damaged.mean < 10.0


def test_do_nothing_is_clearly_below_the_demonstration(mixed_rows):
    do_nothing = [score_preliminary(r.doc).mean for r in mixed_rows]
    demo = [score_re_edit(r.doc, "; ".join(r.re_edits)).mean for r in mixed_rows]
    assert mean(demo) == 10.0
    assert mean(do_nothing) < 7.0
    assert all(d < 9.0 for d in do_nothing)


def test_judge_is_monotone_in_the_number_of_defects_fixed(mixed_rows):
    """For every subset of a row's repairs, adding one more repair raises the mean score."""
    checked = 0
    for row in mixed_rows:
        groups = _repairs_by_defect(row)
        if len(groups) < 2:
            continue
        checked += 1
        for k in range(len(groups)):
            for subset in itertools.combinations(range(len(groups)), k):
                base = score_re_edit(row.doc, "; ".join(line for i in subset for line in groups[i]) or None).mean
                for j in set(range(len(groups))) - set(subset):
                    more = sorted([*subset, j])
                    bigger = score_re_edit(row.doc, "; ".join(line for i in more for line in groups[i])).mean
                    assert bigger > base, (row.id, subset, j)
    assert checked >= 50


def _repairs_by_defect(row):
    """The demonstration's Re_edit lines grouped per defect (wrong_object_edited contributes two lines)."""
    groups, i = [], 0
    for name in row.defects:
        n = 2 if name == "wrong_object_edited" else 1
        groups.append(row.re_edits[i : i + n])
        i += n
    assert i == len(row.re_edits)
    return groups


def test_partial_credit_within_a_defect(single_defect_rows):
    for row in single_defect_rows["wrong_object_edited"]:
        half = score_re_edit(row.doc, row.re_edits[0]).mean
        other_half = score_re_edit(row.doc, row.re_edits[1]).mean
        full = score_re_edit(row.doc, "; ".join(row.re_edits)).mean
        nothing = score_preliminary(row.doc).mean
        assert nothing < half < full and nothing < other_half < full


def test_score_batch_reads_the_final_scene_and_is_deterministic(mixed_rows):
    row = mixed_rows[0]
    prelim = row.doc.to_json()
    final = row.doc.with_scene(row.ideal, stage="final").to_json()
    judge = SandboxJudge()
    results = judge.score_batch([_request(prelim, "a"), _request(final, "b"), _request(prelim, "c")])
    assert all(r.valid and r.calls == 0 for r in results)
    assert results[0].scores == results[2].scores
    assert results[1].scores == dict.fromkeys(DIMENSIONS, 10.0)
    assert min(results[0].scores.values()) < 10.0
    assert all(0.0 <= v <= 10.0 for r in results for v in r.scores.values())


@pytest.mark.parametrize("bad", [None, "not json", json.dumps({"version": 99}), json.dumps({"version": 1})])
def test_unreadable_scene_is_an_invalid_result(bad):
    (result,) = SandboxJudge().score_batch([_request(bad)])
    assert not result.valid and result.scores is None and result.reason == "client_error"


def test_explain_lists_the_violations(single_defect_rows):
    row = single_defect_rows["lit_candle_underwater"][0]
    violations = SandboxJudge().explain(_request(row.doc.to_json()))
    assert [v.kind for v in violations] == ["lit_candle_under_water"]
    assert set(SEVERITY) >= {v.kind for v in violations}


def test_unrequested_sky_changes_are_penalised(single_defect_rows):
    """Removing the sun, adding a moon or relighting are not free in a row that did not ask for them."""
    for row in single_defect_rows["floating_object"][:5]:
        fixed = "; ".join(row.re_edits)
        side = "right" if row.doc.source.sun_side == "left" else "left"
        for extra in ("Remove the sun", "Add the moon", f"Relight the scene from the {side}", "Make it night"):
            damaged = score_re_edit(row.doc, f"{fixed}; {extra}")
            assert damaged.unparsed == [] and damaged.ignored == [], extra
            assert damaged.mean < 9.5, (extra, damaged.scores)
