"""Image-only defects: the request text does not tell the direction of the repair; the image does."""

from __future__ import annotations

import re

import pytest
from PIL import ImageStat

from easyr1.sandbox.answers import score_answer, score_preliminary
from easyr1.sandbox.generator import generate_row
from easyr1.sandbox.render import render_scene

WRONG = {
    ("misplaced_object", "left"): "Move the {obj} to the left",
    ("misplaced_object", "right"): "Move the {obj} to the right",
    ("wrong_exposure", "dark"): "Darken the scene",
    ("wrong_exposure", "bright"): "Brighten the scene",
}
BOTH = {
    "misplaced_object": "Move the {obj} to the left; Move the {obj} to the right",
    "wrong_exposure": "Darken the scene; Brighten the scene",
}


def _rows(kind, n=40):
    return [generate_row(3, i, defects=[kind], min_defects=1, max_defects=1) for i in range(n)]


def _answer(text):
    return f"<CoT>x</CoT>\n<Re_edit>{text}</Re_edit>"


@pytest.mark.parametrize("kind", ["misplaced_object", "wrong_exposure"])
def test_right_direction_repairs_wrong_one_is_worse_both_cancel(kind):
    for row in _rows(kind, 20):
        meta = {"scene_json": row.doc.to_json()}
        clause = row.doc.intent[0]
        obj = clause.args.get("object", "")
        nothing = score_preliminary(meta).mean
        right = score_answer(meta, row.demonstration).mean
        wrong = score_answer(meta, _answer(WRONG[kind, clause.args["off"]].format(obj=obj))).mean
        both = score_answer(meta, _answer(BOTH[kind].format(obj=obj))).mean
        assert right == pytest.approx(10.0)
        assert wrong < nothing - 1.0 < right - 2.0  # several points between the two directions
        assert both == pytest.approx(nothing)


@pytest.mark.parametrize("kind", ["misplaced_object", "wrong_exposure"])
def test_request_text_does_not_tell_the_direction(kind):
    rows = _rows(kind, 80)
    offs = {r.doc.intent[0].args["off"] for r in rows}
    assert len(offs) == 2
    for row in rows:
        text = " ".join([row.instruction_short, row.instruction_detailed, row.demonstration.split("</CoT>")[0]])
        assert not re.search(r"\b(left|right|dark|bright|darker|brighter)\b", text.lower()), text
    # the text-only teacher guesses: right about half the time, never systematically
    right = sum(score_answer({"scene_json": r.doc.to_json()}, r.text_only_demonstration).mean > 9.99 for r in rows)
    assert 0.3 * len(rows) < right < 0.7 * len(rows)


def test_exposure_direction_is_visible_in_the_preliminary_image():
    rows = _rows("wrong_exposure", 30)
    mean = {"dark": [], "bright": []}
    for row in rows:
        image = render_scene(row.doc.scene, 64).convert("L")
        mean[row.doc.intent[0].args["off"]].append(ImageStat.Stat(image).mean[0])
    assert max(mean["dark"]) + 30 < min(mean["bright"])


def test_misplaced_object_is_a_step_from_the_middle_on_either_side():
    for row in _rows("misplaced_object", 30):
        clause = row.doc.intent[0]
        obj = row.doc.scene.find(clause.args["object"])
        expected = 0.3 if clause.args["off"] == "left" else 0.7
        assert obj.x == pytest.approx(expected)
        assert abs(row.doc.source.find(clause.args["object"]).x - 0.5) > 0.1  # "restore" does not centre it


def test_default_rows_never_contain_image_only_defects():
    for i in range(60):
        assert not {"misplaced_object", "wrong_exposure"} & set(generate_row(0, i).defects)
