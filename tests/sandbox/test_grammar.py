from __future__ import annotations

import pytest

from easyr1.sandbox import CATALOGUE, Op, parse_instruction
from easyr1.sandbox.grammar import NotUnderstood, parse_clause, split_clauses

EXPECTED: list[tuple[str, list[Op]]] = [
    ("Move the box to the left", [Op("move", "box", "left")]),
    ("shift the ball right", [Op("move", "ball", "right")]),
    ("Move the cone up", [Op("raise", "cone")]),
    ("Lower the box to the ground", [Op("lower", "box")]),
    ("Drop the ball onto the ground", [Op("lower", "ball")]),
    ("Put the cone on the ground", [Op("place", "cone", None)]),
    ("Set the box down on the ground", [Op("place", "box", None)]),
    ("Raise the ball", [Op("raise", "ball")]),
    ("Recolor the box blue", [Op("recolor", "box", "blue")]),
    ("Paint the ball red", [Op("recolor", "ball", "red")]),
    ("Make the cone purple again", [Op("recolor", "cone", "purple")]),
    ("Turn the box yellow", [Op("recolor", "box", "yellow")]),
    ("Remove the ball", [Op("remove", "ball")]),
    ("Take the box away", [Op("remove", "box")]),
    ("Get rid of the sun", [Op("remove", "sun")]),
    ("Take the sun out of the sky", [Op("remove", "sun")]),
    ("Remove the puddles", [Op("remove", "puddle")]),
    ("Add a blue cone on the left", [Op("add", "cone", "blue|left")]),
    ("Add a pumpkin", [Op("add", "pumpkin", "|")]),
    ("Add the moon", [Op("add", "moon")]),
    ("Add puddles to the ground", [Op("ground", value="wet")]),
    ("Add snow to the tree", [Op("foliage", "tree", "snowy")]),
    ("Replace the decoration with a pumpkin", [Op("replace", "decoration", "pumpkin")]),
    ("Swap the lantern for a wreath", [Op("replace", "lantern", "wreath")]),
    ("Change the decoration into a lantern", [Op("replace", "decoration", "lantern")]),
    ("Replace the sun with the moon", [Op("remove", "sun"), Op("add", "moon")]),
    ("Restore the box", [Op("restore", "box")]),
    ("Bring back the ball", [Op("restore", "ball")]),
    ("Put the cone back", [Op("restore", "cone")]),
    ("Undo the box edit", [Op("restore", "box")]),
    ("Relight the scene from the left", [Op("relight", value="left")]),
    ("Light the scene from the right", [Op("relight", value="right")]),
    ("Fix the shadows", [Op("shadows", None, "auto")]),
    ("Fix the shadow of the box", [Op("shadows", "box", "auto")]),
    ("Flip the shadows", [Op("shadows", None, "flip")]),
    ("Put the shadows on the right", [Op("shadows", None, "right")]),
    ("Cast the shadows to the left", [Op("shadows", None, "left")]),
    ("Move the shadows to the right", [Op("shadows", None, "right")]),
    ("Move the sun to the left", [Op("sun_side", value="left")]),
    ("Put the sun on the right", [Op("sun_side", value="right")]),
    ("Wet the ground", [Op("ground", value="wet")]),
    ("Make the ground wet", [Op("ground", value="wet")]),
    ("Dry the ground", [Op("ground", value="dry")]),
    ("Cover the ground with puddles", [Op("ground", value="wet")]),
    ("Cover the tree in snow", [Op("foliage", "tree", "snowy")]),
    ("Make the tree snowy", [Op("foliage", "tree", "snowy")]),
    ("Make the tree green", [Op("foliage", "tree", "green")]),
    ("Melt the snow", [Op("ground", value="dry"), Op("foliage", "tree", "green")]),
    ("Blow out the candle", [Op("extinguish", "candle")]),
    ("Put out the candle", [Op("extinguish", "candle")]),
    ("Snuff out the candle", [Op("extinguish", "candle")]),
    ("Extinguish the candle", [Op("extinguish", "candle")]),
    ("Light the candle", [Op("light", "candle")]),
    ("Put the candle in the pond", [Op("into_pond", "candle")]),
    ("Sink the candle into the pond", [Op("into_pond", "candle")]),
    ("Move the candle out of the pond", [Op("out_of_pond", "candle")]),
    ("Make it rain", [Op("sky", value="rainy")]),
    ("Make it snow", [Op("sky", value="snowy")]),
    ("Make it a sunny day", [Op("sky", value="clear"), Op("time", value="day")]),
    ("Clear the sky", [Op("sky", value="clear")]),
    ("Make it night", [Op("time", value="night")]),
    ("Turn the day into night", [Op("time", value="night")]),
    ("Change the time to night", [Op("time", value="night")]),
    ("Decorate the scene for lunar new year", [Op("banner", value="lunar new year")]),
]


@pytest.mark.parametrize(("text", "ops"), EXPECTED, ids=[t for t, _ in EXPECTED])
def test_phrase_parses_to_ops(text, ops):
    parsed, unparsed = parse_instruction(text)
    assert unparsed == []
    assert parsed == ops


@pytest.mark.parametrize(
    "text",
    [
        "Improve the image quality and consistency",
        "Make it look better",
        "Remove the shadows",  # shadows follow the sun: not an operation
        "Paint the box",  # no colour
        "Move the box",  # no direction
        "Make the cone ball",  # two objects, no "into": not a replacement
        "Dance",
        "",
    ],
)
def test_outside_the_grammar_is_reported(text):
    ops, unparsed = parse_instruction(text)
    assert ops == []
    assert unparsed == ([text] if text else [])


def test_parse_clause_raises_with_a_reason():
    with pytest.raises(NotUnderstood, match="unknown verb"):
        parse_clause("dance with the box")


def test_clause_splitting():
    assert split_clauses("Remove the lantern and add a pumpkin; Dry the ground. Fix the shadows") == [
        "Remove the lantern",
        "add a pumpkin",
        "Dry the ground",
        "Fix the shadows",
    ]
    # "and" between two objects does not split
    assert split_clauses("Paint the box and the ball red") == ["Paint the box and the ball red"]
    ops, unparsed = parse_instruction("Wet the ground, then blow out the candle")
    assert ops == [Op("ground", value="wet"), Op("extinguish", "candle")] and unparsed == []


def test_partly_understood_text_keeps_the_understood_part():
    ops, unparsed = parse_instruction("Dry the ground; make it prettier")
    assert ops == [Op("ground", value="dry")]
    assert unparsed == ["make it prettier"]


def test_every_demonstration_wording_parses(mixed_rows, single_defect_rows):
    """Grammar coverage: every repair wording the generator writes is understood in full."""
    rows = mixed_rows + [r for rows in single_defect_rows.values() for r in rows]
    seen = set()
    for row in rows:
        for line in row.re_edits:
            ops, unparsed = parse_instruction(line)
            assert ops and unparsed == [], (row.id, line)
            seen.add(line.split()[0])
    assert len(seen) >= 12  # wording variation: many different verbs are used


def test_instruction_clauses_do_not_repair_their_own_defect(single_defect_rows):
    """The editor is literal: restating the request does not fix what the preliminary edit missed (except the
    wrong-object kind, where restating at least edits the right object)."""
    from easyr1.sandbox import score_preliminary, score_re_edit

    for name, rows in single_defect_rows.items():
        spec = CATALOGUE[name]
        for row in rows[:3]:
            short = row.instruction_short.rstrip(".")
            before = score_preliminary(row.doc).scores[spec.dimension]
            after = score_re_edit(row.doc, short).scores[spec.dimension]
            if name != "wrong_object_edited":
                assert after <= before + 1e-9, (name, short)
