"""Defects whose repair can be read only from the image.

``wrong_exposure``: the request asks for dusk light (:data:`DUSK`, a dimmer picture); the preliminary edit made the
picture a step (:data:`~easyr1.sandbox.scene.LIGHT_STEP`) too dark **or** not dark enough. The repair is "brighten
the scene" or "darken the scene"; the wrong one doubles the error (worse than doing nothing), both cancel out. The
direction is a property of the whole picture (its mean brightness), so even a policy that sees a few vision tokens
can read it.

``misplaced_object``: the request asks to put an object in the middle of the scene; the preliminary edit left it a
step (:data:`~easyr1.sandbox.scene.MOVE_STEP`) to the left **or** to the right of the middle, drawn at random. The
request text is the same either way, so the direction of the repair ("move the ball to the right" or "… to the
left") is visible only in the preliminary image. The repairs are mutually exclusive: the right one puts the object
in the middle, the wrong one pushes it two steps away (the judge scores the distance from the middle, so the wrong
repair is *worse* than doing nothing), and both together cancel out. The editor has no absolute placement ("move the
ball to the middle" is not in its grammar), so there is no direction-free repair.

The source scene is prepared so that the object is easy to see at a few vision tokens per image: the tree stands at
an edge and no other plain object is in the scene.
"""

from __future__ import annotations

import random

from .scene import LIGHT_STEP, MOVABLE_KINDS, MOVE_STEP, Clause, Scene, opposite

MIDDLE = 0.5
"""Where the request wants the object (fraction of the width)."""
SOURCE_SLOTS = (0.12, 0.3, 0.66)
"""Source positions of the object (none within the judge's tolerance of the middle, so *restore* repairs nothing)."""


def _pick(rng: random.Random, options: list[str]) -> str:
    return options[rng.randrange(len(options))]


def misplaced_prepare(src: Scene, rng: random.Random) -> Clause:
    movable = [o for o in src.objects if o.kind in MOVABLE_KINDS]
    target = movable[rng.randrange(len(movable))]
    src.objects = [o for o in src.objects if o.kind not in MOVABLE_KINDS or o is target]
    target.x = SOURCE_SLOTS[rng.randrange(len(SOURCE_SLOTS))]
    for tree in src.all_of(("tree",)):
        tree.x = 0.08 if rng.random() < 0.5 else 0.92
    off = "left" if rng.random() < 0.5 else "right"
    return Clause("center", {"object": target.kind, "x": MIDDLE, "off": off})


def misplaced_apply(s: Scene, c: Clause, defective: bool) -> None:
    obj = s.find(c.args["object"])
    assert obj is not None
    shift = (-MOVE_STEP if c.args["off"] == "left" else MOVE_STEP) if defective else 0.0
    obj.x = round(c.args["x"] + shift, 4)


def misplaced_phrases(c: Clause, rng: random.Random) -> tuple[str, str]:
    kind = c.args["object"]
    detailed = _pick(rng, [
        f"move the {kind} to the middle", f"put the {kind} in the middle", f"place the {kind} in the centre",
    ])  # fmt: skip
    return f"centre the {kind}", detailed


def misplaced_cot(c: Clause, rng: random.Random) -> str:
    """Direction-free on purpose: the reason names the defect, the ``<Re_edit>`` carries the direction."""
    kind = c.args["object"]
    return _pick(rng, [f"The {kind} is not in the middle.", f"The {kind} missed the middle."])


def _moves(kind: str, side: str, rng: random.Random, short: bool) -> list[str]:
    options = [f"Move the {kind} to the {side}", f"Shift the {kind} {side}", f"Slide the {kind} to the {side}"]
    choice = _pick(rng, options)
    return [min(options, key=len) if short else choice]


def misplaced_fixes(c: Clause, rng: random.Random, short: bool = False) -> list[str]:
    return _moves(c.args["object"], opposite(c.args["off"]), rng, short)


def misplaced_guess(c: Clause, rng: random.Random, short: bool = False) -> list[str]:
    """A text-only teacher's repair: the right kind of repair, the direction drawn at random."""
    side = "left" if rng.random() < 0.5 else "right"
    return _moves(c.args["object"], side, rng, short)


DUSK = 0.55
"""The exposure a dusk request asks for (1 = the source's daylight)."""


def exposure_prepare(src: Scene, rng: random.Random) -> Clause:
    off = "dark" if rng.random() < 0.5 else "bright"
    return Clause("exposure", {"level": DUSK, "off": off})


def exposure_apply(s: Scene, c: Clause, defective: bool) -> None:
    shift = (-LIGHT_STEP if c.args["off"] == "dark" else LIGHT_STEP) if defective else 0.0
    s.light = round(c.args["level"] + shift, 4)


def exposure_phrases(c: Clause, rng: random.Random) -> tuple[str, str]:
    detailed = _pick(rng, ["make it dusk", "turn the light to dusk", "give the scene dusk light"])
    return "make it dusk", detailed


def exposure_cot(c: Clause, rng: random.Random) -> str:
    """Direction-free on purpose, as for :func:`misplaced_cot`."""
    return _pick(rng, ["The light is not dusk light.", "The exposure misses dusk."])


def _light(up: bool, rng: random.Random, short: bool) -> list[str]:
    options = ["Brighten the scene", "Lighten the scene"] if up else ["Darken the scene", "Dim the scene"]
    choice = _pick(rng, options)
    return [min(options, key=len) if short else choice]


def exposure_fixes(c: Clause, rng: random.Random, short: bool = False) -> list[str]:
    return _light(c.args["off"] == "dark", rng, short)


def exposure_guess(c: Clause, rng: random.Random, short: bool = False) -> list[str]:
    """A text-only teacher's repair: the right kind of repair, the direction drawn at random."""
    return _light(rng.random() < 0.5, rng, short)
