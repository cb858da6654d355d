from __future__ import annotations

import json

import pytest
from PIL import Image

from easyr1.core.types import EditRequest
from easyr1.editing.protocol import Editor
from easyr1.reward.judge.protocol import DIMENSIONS, JudgeRequest
from easyr1.sandbox import SandboxEditor, SandboxJudge, SceneDoc, render_scene


def _req(row, instruction: str, size: int = 64, metadata=None) -> EditRequest:
    image = render_scene(row.doc.scene, size)
    meta = {"scene_json": row.doc.to_json()} if metadata is None else metadata
    return EditRequest(image=image, instruction=instruction, seed=0, key=row.id, metadata=meta)


def test_is_an_editor():
    assert isinstance(SandboxEditor(), Editor)


def test_demonstration_edit_then_judge_like_the_driver(mixed_rows):
    """Editor info merged over the row metadata (as the driver does) makes the judge score the final scene."""
    editor, judge = SandboxEditor(), SandboxJudge()
    rows = mixed_rows[:8]
    row_meta = [{"scene_json": r.doc.to_json(), "defects": r.defects} for r in rows]
    results = editor.edit([_req(r, "; ".join(r.re_edits), metadata=m) for r, m in zip(rows, row_meta, strict=True)])
    assert len(results) == len(rows)
    requests = []
    for r, meta, res in zip(rows, row_meta, results, strict=True):
        assert res.ok and res.reason is None and res.image is not None
        assert res.image.size == (64, 64)
        assert res.info["unparsed"] == [] and res.info["ignored"] == []
        assert SceneDoc.from_json(res.info["scene_json"]).stage == "final"
        src = render_scene(r.doc.source, 64)
        requests.append(JudgeRequest(src, res.image, r.instruction_detailed, key=r.id, metadata={**meta, **res.info}))
    for score in judge.score_batch(requests):
        assert score.valid and score.scores == dict.fromkeys(DIMENSIONS, 10.0)


def test_output_image_shows_the_final_scene(mixed_rows):
    row = mixed_rows[1]
    (res,) = SandboxEditor().edit([_req(row, "; ".join(row.re_edits), size=96)])
    final = SceneDoc.from_json(res.info["scene_json"]).scene
    assert res.image.size == (96, 96)
    assert res.image.tobytes() == render_scene(final, 96).tobytes()
    assert res.image.tobytes() != render_scene(row.doc.scene, 96).tobytes()


def test_fixed_output_size():
    from easyr1.sandbox import generate_row

    row = generate_row(0, 0)
    (res,) = SandboxEditor(image_size=128).edit([_req(row, "Fix the shadows")])
    assert res.image.size == (128, 128)


def test_nothing_understood_is_a_valid_unchanged_edit(mixed_rows):
    row = mixed_rows[2]
    (res,) = SandboxEditor().edit([_req(row, "Improve the image quality and consistency")])
    assert res.ok
    assert res.info["unparsed"] == ["Improve the image quality and consistency"]
    assert res.info["applied"] == []
    assert SceneDoc.from_json(res.info["scene_json"]).scene == row.doc.scene
    assert res.image.tobytes() == render_scene(row.doc.scene, 64).tobytes()


def test_inapplicable_operation_is_reported_as_ignored(mixed_rows):
    row = next(r for r in mixed_rows if r.doc.scene.find("candle") is None)
    (res,) = SandboxEditor().edit([_req(row, "Blow out the candle")])
    assert res.ok and res.info["unparsed"] == []
    assert res.info["ignored"] == ["extinguish candle: there is no candle"]


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ({}, "missing_scene"),
        ({"scene_json": "{"}, "bad_scene"),
        ({"scene_json": json.dumps({"version": 2})}, "bad_scene"),
    ],
)
def test_broken_request_is_a_failure_not_an_image(mixed_rows, metadata, reason):
    (res,) = SandboxEditor().edit([_req(mixed_rows[0], "Fix the shadows", metadata=metadata)])
    assert not res.ok and res.image is None and res.reason == reason
    assert res.info["detail"]


def test_batch_keeps_order_and_isolates_failures(mixed_rows):
    good = _req(mixed_rows[0], "; ".join(mixed_rows[0].re_edits))
    bad = EditRequest(image=Image.new("RGB", (64, 64)), instruction="x", seed=0, key="bad", metadata={})
    results = SandboxEditor().edit([good, bad, good])
    assert [r.ok for r in results] == [True, False, True]
    assert results[0].info["scene_json"] == results[2].info["scene_json"]


def test_restore_brings_back_the_source_object(single_defect_rows):
    for row in single_defect_rows["wrong_object_edited"]:
        other = row.doc.intent[0].args["distractor"]
        (res,) = SandboxEditor().edit([_req(row, f"Restore the {other}")])
        final = SceneDoc.from_json(res.info["scene_json"]).scene
        before = row.doc.source.find(other)
        after = final.find(other)
        assert after is not None and (after.color, after.x) == (before.color, before.x)
