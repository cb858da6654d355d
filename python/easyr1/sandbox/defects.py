"""The defect catalogue: each defect is a requested edit that the *preliminary* editor carried out incompletely.

For every kind this module knows how to prepare a source scene for it, which clause to request, how the edit looks
done right and done with the defect, how to phrase the request (short and detailed), and how to explain and repair
it (``<CoT>`` and ``<Re_edit>`` lines, several wordings each). A defect always follows from its clause — rain that
left the ground dry, a sun moved without its shadows — so the repair can be inferred from the instruction text.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from ..config.sandbox import SANDBOX_DEFECTS
from ..reward.judge.protocol import DIMENSIONS
from .image_defects import (
    exposure_apply,
    exposure_cot,
    exposure_fixes,
    exposure_guess,
    exposure_phrases,
    exposure_prepare,
    misplaced_apply,
    misplaced_cot,
    misplaced_fixes,
    misplaced_guess,
    misplaced_phrases,
    misplaced_prepare,
)
from .ops import free_slot
from .scene import (
    COLORS,
    DECORATION_OF_FESTIVAL,
    FIXED_COLOR,
    FLOAT_HEIGHT,
    MOVABLE_KINDS,
    MOVE_STEP,
    POND_X,
    Clause,
    Scene,
    SceneObject,
    opposite,
)

PG, EC, CS, LC, TA = DIMENSIONS


@dataclass(frozen=True)
class DefectSpec:
    name: str
    dimension: str
    """The dimension this defect is meant to lower most."""
    group: str | None
    """Defects sharing a group never appear together (they all change the sky or the sun)."""
    description: str
    prepare: Callable[[Scene, random.Random], Clause]
    """Adjust the source scene for this defect (in place) and return the requested clause."""
    apply: Callable[[Scene, Clause, bool], None]
    """Apply the clause to a scene in place: correctly, or with the defect (``defective=True``)."""
    phrases: Callable[[Clause, random.Random], tuple[str, str]]
    """(short, detailed) wording of the request."""
    cot: Callable[[Clause, random.Random], str]
    fixes: Callable[[Clause, random.Random, bool], list[str]]
    """Re_edit lines that repair the defect (``short=True``: the shortest wording of each)."""
    guess: Callable[[Clause, random.Random, bool], list[str]] | None = None
    """Image-only defects: the repair a teacher that reads only the text would write (``None``: the text says
    it all, so the guess is the repair)."""


def _pick(rng: random.Random, options: list[str]) -> str:
    return options[rng.randrange(len(options))]


def _fix(rng: random.Random, short: bool, options: list[str]) -> str:
    """A repair wording: random, or the shortest one when the answer must stay short."""
    choice = _pick(rng, options)  # drawn either way, so the row's random stream does not depend on ``short``
    return min(options, key=len) if short else choice


def _reshadow(scene: Scene) -> None:
    for o in scene.objects:
        o.shadow = opposite(scene.sun_side)


# --- shadow_wrong_side: the sun was moved, the shadows were not -----------------------------------------------------


def _shadow_prepare(src: Scene, rng: random.Random) -> Clause:
    return Clause("sun_side", {"side": opposite(src.sun_side)})


def _shadow_apply(s: Scene, c: Clause, defective: bool) -> None:
    s.sun_side = c.args["side"]
    if not defective:
        _reshadow(s)


def _shadow_phrases(c: Clause, rng: random.Random) -> tuple[str, str]:
    side = c.args["side"]
    p = _pick(rng, [f"move the sun to the {side}", f"shift the sun to the {side}", f"put the sun on the {side}"])
    return p, p


def _shadow_cot(c: Clause, rng: random.Random) -> str:
    side = c.args["side"]
    return _pick(rng, [f"The shadows still fall {side}, toward the sun.", "The shadows point at the sun."])


def _shadow_fixes(c: Clause, rng: random.Random, short: bool = False) -> list[str]:
    side, away = c.args["side"], opposite(c.args["side"])
    return [_fix(rng, short, [
        f"Put the shadows on the {away}", f"Cast the shadows to the {away}", f"Move the shadows to the {away}",
        "Fix the shadows", f"Relight the scene from the {side}",
    ])]  # fmt: skip


# --- floating_object: an added object hovers above the ground -------------------------------------------------------


def _float_prepare(src: Scene, rng: random.Random) -> Clause:
    free = [k for k in MOVABLE_KINDS if src.find(k) is None]
    return Clause("add_object", {"object": _pick(rng, free), "color": _pick(rng, list(COLORS))})


def _float_apply(s: Scene, c: Clause, defective: bool) -> None:
    obj = SceneObject(kind=c.args["object"], color=c.args["color"], x=free_slot(s), shadow=opposite(s.sun_side))
    obj.elevation = FLOAT_HEIGHT if defective else 0.0
    s.objects.append(obj)


def _float_phrases(c: Clause, rng: random.Random) -> tuple[str, str]:
    kind, color = c.args["object"], c.args["color"]
    detailed = _pick(rng, [
        f"add a {color} {kind} on the ground", f"put a {color} {kind} next to the tree",
        f"add a {color} {kind} beside the tree",
    ])  # fmt: skip
    return f"add a {kind}", detailed


def _float_cot(c: Clause, rng: random.Random) -> str:
    kind = c.args["object"]
    return _pick(rng, [f"The new {kind} floats in the air.", f"The {kind} hovers above the ground."])


def _float_fixes(c: Clause, rng: random.Random, short: bool = False) -> list[str]:
    kind = c.args["object"]
    return [_fix(rng, short, [
        f"Lower the {kind} to the ground", f"Put the {kind} on the ground", f"Drop the {kind} onto the ground",
        f"Set the {kind} down on the ground",
    ])]  # fmt: skip


# --- weather and time: rain without wet ground, a sunny sky over puddles, snow on summer leaves, sun at night -------


def _weather_apply(s: Scene, c: Clause, defective: bool) -> None:
    a = c.args
    if a.get("night"):
        s.night = True
        s.sun = defective  # the preliminary edit darkened the sky but left the sun up
        return
    s.sky = a["sky"]
    if a["sky"] == "rainy":
        s.sun = False
        s.ground = "dry" if defective else "wet"
    elif a["sky"] == "clear":
        s.sun, s.sun_side = True, a["sun_side"]
        _reshadow(s)
        s.ground = "wet" if defective else "dry"
    elif a["sky"] == "snowy":
        s.sun, s.ground = False, "snowy"
        for t in s.all_of(("tree",)):
            t.foliage = "green" if defective else "snowy"


def _rain_prepare(src: Scene, rng: random.Random) -> Clause:
    return Clause("weather", {"sky": "rainy"})


def _sunny_prepare(src: Scene, rng: random.Random) -> Clause:
    src.sky, src.sun, src.ground = "rainy", False, "wet"
    return Clause("weather", {"sky": "clear", "sun_side": src.sun_side})


def _snow_prepare(src: Scene, rng: random.Random) -> Clause:
    return Clause("weather", {"sky": "snowy"})


def _night_prepare(src: Scene, rng: random.Random) -> Clause:
    return Clause("weather", {"night": True})


def _weather_phrases(c: Clause, rng: random.Random) -> tuple[str, str]:
    a = c.args
    if a.get("night"):
        options = ["make it night", "turn the day into night", "change the time to night"]
    else:
        options = {
            "rainy": ["make it rain", "make the weather rainy", "turn the weather rainy"],
            "clear": ["make it a sunny day", "clear the sky", "make the weather sunny"],
            "snowy": ["make it snow", "make the weather snowy", "turn the scene into a snowy day"],
        }[a["sky"]]
    p = _pick(rng, options)
    return p, p


def _weather_cot(c: Clause, rng: random.Random) -> str:
    a = c.args
    if a.get("night"):
        return _pick(rng, ["The sun shines at night.", "It is night but the sun is up."])
    return _pick(rng, {
        "rainy": ["It rains but the ground is dry.", "Rain should wet the ground."],
        "clear": ["The sky is clear but the ground is wet.", "Sunny sky over wet ground."],
        "snowy": ["It snows but the tree is green.", "The tree has summer leaves in snow."],
    }[a["sky"]])  # fmt: skip


def _weather_fixes(c: Clause, rng: random.Random, short: bool = False) -> list[str]:
    a = c.args
    if a.get("night"):
        return [_fix(rng, short, ["Remove the sun", "Replace the sun with the moon", "Take the sun out of the sky"])]
    return [_fix(rng, short, {
        "rainy": ["Wet the ground", "Make the ground wet", "Add puddles to the ground"],
        "clear": ["Dry the ground", "Make the ground dry", "Remove the puddles"],
        "snowy": ["Cover the tree in snow", "Make the tree snowy", "Add snow to the tree"],
    }[a["sky"]])]  # fmt: skip


# --- lit_candle_underwater: the candle was sunk but its flame burns on ---------------------------------------------


def _candle_prepare(src: Scene, rng: random.Random) -> Clause:
    src.pond = True
    src.objects.append(SceneObject("candle", "white", free_slot(src), shadow=opposite(src.sun_side), lit=True))
    return Clause("in_pond", {"object": "candle"})


def _candle_apply(s: Scene, c: Clause, defective: bool) -> None:
    candle = s.find("candle")
    assert candle is not None
    candle.x, candle.in_pond = POND_X, True
    candle.lit = defective


def _candle_phrases(c: Clause, rng: random.Random) -> tuple[str, str]:
    p = _pick(rng, ["put the candle in the pond", "move the candle into the pond", "sink the candle into the pond"])
    return p, p


def _candle_cot(c: Clause, rng: random.Random) -> str:
    return _pick(rng, ["The candle burns under water.", "A flame cannot burn under water."])


def _candle_fixes(c: Clause, rng: random.Random, short: bool = False) -> list[str]:
    return [
        _fix(rng, short, ["Blow out the candle", "Put out the candle", "Extinguish the candle", "Snuff out the candle"])
    ]


# --- wrong_decoration: the festival banner came with another festival's decoration ----------------------------------


def _decor_prepare(src: Scene, rng: random.Random) -> Clause:
    festival = _pick(rng, sorted(DECORATION_OF_FESTIVAL))
    wrong = _pick(rng, sorted(k for f, k in DECORATION_OF_FESTIVAL.items() if f != festival))
    return Clause("festival", {"festival": festival, "wrong": wrong})


def _decor_apply(s: Scene, c: Clause, defective: bool) -> None:
    s.festival = c.args["festival"]
    kind = c.args["wrong"] if defective else DECORATION_OF_FESTIVAL[c.args["festival"]]
    s.objects.append(SceneObject(kind, FIXED_COLOR[kind], free_slot(s, "right"), shadow=opposite(s.sun_side)))


def _decor_phrases(c: Clause, rng: random.Random) -> tuple[str, str]:
    f = c.args["festival"]
    p = _pick(rng, [f"decorate the scene for {f}", f"decorate it for {f}", f"get it decorated for {f}"])
    return f"decorate for {f}", p


def _decor_cot(c: Clause, rng: random.Random) -> str:
    f = c.args["festival"]
    right = DECORATION_OF_FESTIVAL[f]
    return _pick(rng, [f"The decoration does not fit {f}.", f"{f.capitalize()} needs a {right}."])


def _decor_fixes(c: Clause, rng: random.Random, short: bool = False) -> list[str]:
    right = DECORATION_OF_FESTIVAL[c.args["festival"]]
    return [_fix(rng, short, [
        f"Replace the decoration with a {right}", f"Swap the decoration for a {right}",
        f"Change the decoration into a {right}",
    ])]  # fmt: skip


# --- wrong_object_edited: the edit landed on another object ---------------------------------------------------------


def _wrong_prepare(src: Scene, rng: random.Random) -> Clause:
    movable = [o for o in src.objects if o.kind in MOVABLE_KINDS]
    assert len(movable) == 2, "the generator gives wrong_object_edited scenes exactly two movable objects"
    target, other = rng.sample(movable, 2)
    mode = _pick(rng, ["recolor", "remove", "move"])
    args: dict = {"object": target.kind, "distractor": other.kind, "distractor_color": other.color}
    if mode == "recolor":
        args["color"] = _pick(rng, [c for c in COLORS if c not in (target.color, other.color)])
    elif mode == "move":
        if min(target.x, other.x) < 0.25:
            args["direction"] = "right"
        else:
            args["direction"] = _pick(rng, ["left", "right"])
    return Clause(mode, args)


def _wrong_apply(s: Scene, c: Clause, defective: bool) -> None:
    obj = s.find(c.args["distractor"] if defective else c.args["object"])
    assert obj is not None
    if c.kind == "recolor":
        obj.color = c.args["color"]
    elif c.kind == "remove":
        s.objects.remove(obj)
    else:
        obj.x += MOVE_STEP if c.args["direction"] == "right" else -MOVE_STEP


def _wrong_phrases(c: Clause, rng: random.Random) -> tuple[str, str]:
    kind = c.args["object"]
    if c.kind == "recolor":
        color = c.args["color"]
        p = _pick(rng, [f"make the {kind} {color}", f"paint the {kind} {color}", f"recolor the {kind} {color}"])
    elif c.kind == "remove":
        p = _pick(rng, [f"remove the {kind}", f"delete the {kind}", f"take the {kind} away"])
    else:
        d = c.args["direction"]
        p = _pick(rng, [f"move the {kind} to the {d}", f"shift the {kind} to the {d}", f"slide the {kind} {d}"])
    return p, p


def _wrong_cot(c: Clause, rng: random.Random) -> str:
    kind, other = c.args["object"], c.args["distractor"]
    return _pick(rng, [f"The {other} was edited, not the {kind}.", f"The edit hit the {other}, not the {kind}."])


def _wrong_fixes(c: Clause, rng: random.Random, short: bool = False) -> list[str]:
    kind, other, other_color = c.args["object"], c.args["distractor"], c.args["distractor_color"]
    if c.kind == "recolor":
        color = c.args["color"]
        first = _fix(
            rng, short, [f"Make the {kind} {color}", f"Paint the {kind} {color}", f"Recolor the {kind} {color}"]
        )
        second = _fix(
            rng,
            short,
            [f"Restore the {other}", f"Make the {other} {other_color} again", f"Paint the {other} {other_color}"],
        )
    elif c.kind == "remove":
        first = _fix(rng, short, [f"Remove the {kind}", f"Delete the {kind}", f"Take the {kind} away"])
        second = _fix(rng, short, [f"Restore the {other}", f"Bring back the {other}", f"Put the {other} back"])
    else:
        d = c.args["direction"]
        first = _fix(rng, short, [f"Move the {kind} to the {d}", f"Shift the {kind} {d}"])
        second = _fix(rng, short, [f"Restore the {other}", f"Move the {other} back to the {opposite(d)}"])
    return [first, second]


CATALOGUE: dict[str, DefectSpec] = {
    spec.name: spec
    for spec in (
        DefectSpec("shadow_wrong_side", PG, "light", "the sun was moved but the shadows still fall toward it",
                   _shadow_prepare, _shadow_apply, _shadow_phrases, _shadow_cot, _shadow_fixes),
        DefectSpec("floating_object", PG, None, "an added object floats above the ground",
                   _float_prepare, _float_apply, _float_phrases, _float_cot, _float_fixes),
        DefectSpec("dry_ground_in_rain", EC, "light", "it was made to rain but the ground stayed dry",
                   _rain_prepare, _weather_apply, _weather_phrases, _weather_cot, _weather_fixes),
        DefectSpec("wet_ground_clear_sky", EC, "light", "the sky was cleared but the ground stayed wet",
                   _sunny_prepare, _weather_apply, _weather_phrases, _weather_cot, _weather_fixes),
        DefectSpec("summer_foliage_in_snow", EC, "light", "it was made to snow but the tree kept summer leaves",
                   _snow_prepare, _weather_apply, _weather_phrases, _weather_cot, _weather_fixes),
        DefectSpec("sun_at_night", LC, "light", "it was made night but the sun still shines",
                   _night_prepare, _weather_apply, _weather_phrases, _weather_cot, _weather_fixes),
        DefectSpec("lit_candle_underwater", LC, None, "the candle was sunk in the pond but still burns",
                   _candle_prepare, _candle_apply, _candle_phrases, _candle_cot, _candle_fixes),
        DefectSpec("wrong_decoration", CS, None, "the festival got another festival's decoration",
                   _decor_prepare, _decor_apply, _decor_phrases, _decor_cot, _decor_fixes),
        DefectSpec("wrong_object_edited", TA, "objects", "the edit was applied to another object than the one named",
                   _wrong_prepare, _wrong_apply, _wrong_phrases, _wrong_cot, _wrong_fixes),
        DefectSpec("misplaced_object", PG, "objects", "an object asked for the middle was left a step to one side",
                   misplaced_prepare, misplaced_apply, misplaced_phrases, misplaced_cot, misplaced_fixes,
                   misplaced_guess),
        DefectSpec("wrong_exposure", EC, None, "dusk light was asked for; the picture came out too dark or too bright",
                   exposure_prepare, exposure_apply, exposure_phrases, exposure_cot, exposure_fixes, exposure_guess),
    )
}  # fmt: skip
"""Every defect kind by name (the names are :data:`easyr1.config.sandbox.SANDBOX_DEFECTS`)."""

if tuple(CATALOGUE) != tuple(SANDBOX_DEFECTS):  # one list of names for the config and the world
    raise RuntimeError(f"defect catalogue {tuple(CATALOGUE)} and config names {SANDBOX_DEFECTS} differ")
