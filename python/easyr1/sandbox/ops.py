"""Execute parsed re-edit operations on a scene, literally: each operation changes exactly what it names.

The editor is deliberately literal — ``make it rain`` darkens the sky and hides the sun but does not wet the
ground — so that restating the original instruction does not repair a preliminary edit; the policy has to say
what is missing. The one exception is ``relight … from <side>``, which moves the sun *and* its shadows, because
relighting is about light and shadow together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .grammar import Op
from .scene import (
    DECORATION_KINDS,
    DECORATION_OF_FESTIVAL,
    FIXED_COLOR,
    FLOAT_HEIGHT,
    LIGHT_STEP,
    MOVE_STEP,
    OBJECT_KINDS,
    POND_X,
    Scene,
    SceneObject,
    opposite,
)

SLOTS: tuple[float, ...] = (0.12, 0.3, 0.48, 0.66)
"""Ground positions where new objects are put (the pond lies further right)."""
DEFAULT_COLOR = "red"
"""Colour of an added object when the instruction names none."""


@dataclass
class ApplyReport:
    applied: list[str] = field(default_factory=list)
    """Operations that changed (or confirmed) the scene, as ``action target value``."""
    ignored: list[str] = field(default_factory=list)
    """Operations understood but not applicable to this scene, with the reason."""


def free_slot(scene: Scene, prefer: str | None = None) -> float:
    """A ground position without an object on it (left to right, or right to left when ``prefer='right'``)."""
    slots = sorted(SLOTS, reverse=prefer == "right")
    taken = [o.x for o in scene.objects if o.kind != "tree" and not o.in_pond]
    for x in slots:
        if all(abs(x - t) > 0.09 for t in taken):
            return x
    return 0.5


def _targets(scene: Scene, target: str | None) -> list[SceneObject]:
    if target == "decoration":
        return scene.all_of(DECORATION_KINDS)
    if target == "flame":
        target = "candle"
    return [o for o in scene.objects if o.kind == target]


def _new_object(
    scene: Scene, kind: str, color: str | None, prefer: str | None = None, x: float | None = None
) -> SceneObject:
    col = FIXED_COLOR.get(kind) or color or DEFAULT_COLOR
    obj = SceneObject(kind=kind, color=col, x=free_slot(scene, prefer) if x is None else x)
    obj.shadow = opposite(scene.sun_side)
    return obj


def apply_ops(scene: Scene, ops: list[Op], source: Scene) -> tuple[Scene, ApplyReport]:
    """Apply ``ops`` in order to a copy of ``scene``; ``source`` serves ``restore``."""
    out = scene.copy()
    report = ApplyReport()
    for op in ops:
        reason = _apply_one(out, op, source)
        label = " ".join(p for p in (op.action, op.target, op.value) if p)
        if reason is None:
            report.applied.append(label)
        else:
            report.ignored.append(f"{label}: {reason}")
    return out, report


def _apply_one(s: Scene, op: Op, source: Scene) -> str | None:
    """Apply one operation in place; returns why it was not applicable, or None."""
    a, t, v = op.action, op.target, op.value
    objs = _targets(s, t)
    if a in ("move", "raise", "lower", "place", "into_pond", "out_of_pond", "recolor") and t in (
        "sun", "moon", "sky", "ground", "pond", "snow", "puddle", "banner", "foliage", "shadow"
    ):  # fmt: skip
        return f"cannot {a} the {t}"
    if a == "move":
        if not objs:
            return f"there is no {t}"
        for o in objs:
            o.x = min(0.95, max(0.05, o.x + (MOVE_STEP if v == "right" else -MOVE_STEP)))
            if o.in_pond and abs(o.x - POND_X) > 0.1:
                o.in_pond = False
        return None
    if a == "raise":
        if not objs:
            return f"there is no {t}"
        for o in objs:
            o.elevation = min(0.5, o.elevation + FLOAT_HEIGHT)
        return None
    if a == "lower":
        if not objs:
            return f"there is no {t}"
        for o in objs:
            o.elevation = 0.0
        return None
    if a == "place":
        if objs:
            for o in objs:
                o.elevation = 0.0
            return None
        return _apply_one(s, Op("add", t, f"{v or ''}|"), source)
    if a == "into_pond":
        if not s.pond:
            return "there is no pond"
        if not objs:
            return f"there is no {t}"
        for o in objs:
            o.x, o.in_pond, o.elevation = POND_X, True, 0.0
        return None
    if a == "out_of_pond":
        moved = [o for o in objs if o.in_pond]
        if not moved:
            return f"no {t} in the pond"
        for o in moved:
            o.in_pond = False
            o.x = free_slot(s)
        return None
    if a == "exposure":
        s.light = round(min(1.5, max(0.05, s.light + (LIGHT_STEP if v == "up" else -LIGHT_STEP))), 4)
        return None
    if a == "sun_side":
        if not s.sun:
            return "there is no sun"
        s.sun_side = v or s.sun_side
        return None
    if a == "relight":
        s.sun_side = v or s.sun_side
        for o in s.objects:
            o.shadow = opposite(s.sun_side)
        return None
    if a == "shadows":
        owners = objs if t else s.objects
        if not owners:
            return f"there is no {t}"
        for o in owners:
            if v == "auto":
                o.shadow = opposite(s.sun_side)
            elif v == "flip":
                o.shadow = opposite(o.shadow)
            else:
                o.shadow = v or o.shadow
        return None
    if a == "recolor":
        if not objs:
            return f"there is no {t}"
        if t in FIXED_COLOR or t == "decoration" or t == "tree":
            return f"the {t} keeps its colour"
        for o in objs:
            o.color = v or o.color
        return None
    if a == "foliage":
        trees = s.all_of(("tree",))
        if not trees:
            return "there is no tree"
        for o in trees:
            o.foliage = v or o.foliage
        return None
    if a == "ground":
        s.ground = v or s.ground
        return None
    if a == "sky":
        s.sky = v or s.sky
        s.sun = s.sky == "clear" and not s.night
        return None
    if a == "time":
        s.night = v == "night"
        return None
    if a == "banner":
        s.festival = v
        return None
    if a == "extinguish" or a == "light":
        candles = s.all_of(("candle",))
        if not candles:
            return "there is no candle"
        for o in candles:
            o.lit = a == "light"
        return None
    if a == "remove":
        return _remove(s, t, objs)
    if a == "add":
        return _add(s, t, v)
    if a == "replace":
        if not objs:
            return f"there is no {t}"
        new = v
        if new == "decoration" and s.festival:
            new = DECORATION_OF_FESTIVAL[s.festival]
        if new not in OBJECT_KINDS:
            return f"cannot put a {new} in place of the {t}"
        for o in objs:
            s.objects.remove(o)
        if s.find(new) is None:
            s.objects.append(_new_object(s, new, None, x=objs[0].x))
        return None
    if a == "restore":
        return _restore(s, t, source)
    return f"unknown action {a}"


def _remove(s: Scene, t: str | None, objs: list[SceneObject]) -> str | None:
    if t == "sun" or t == "moon":
        if not getattr(s, t):
            return f"there is no {t}"
        setattr(s, t, False)
        return None
    if t == "puddle":
        if s.ground != "wet":
            return "there are no puddles"
        s.ground = "dry"
        return None
    if t == "snow":
        if s.ground != "snowy" and not any(o.foliage == "snowy" for o in s.all_of(("tree",))):
            return "there is no snow"
        s.ground = "dry" if s.ground == "snowy" else s.ground
        for o in s.all_of(("tree",)):
            o.foliage = "green"
        return None
    if t == "banner":
        if s.festival is None:
            return "there is no banner"
        s.festival = None
        return None
    if t == "flame":
        return _apply_one(s, Op("extinguish", "candle"), s)
    if t in ("sky", "ground", "pond", "foliage", "shadow"):
        return f"cannot remove the {t}"
    if not objs:
        return f"there is no {t}"
    for o in objs:
        s.objects.remove(o)
    return None


def _add(s: Scene, t: str | None, v: str | None) -> str | None:
    if t in ("sun", "moon"):
        if getattr(s, t):
            return f"the {t} is already there"
        setattr(s, t, True)
        return None
    color, _, side = (v or "|").partition("|")
    kind = t
    if kind == "decoration":
        if not s.festival:
            return "which decoration? there is no festival banner"
        kind = DECORATION_OF_FESTIVAL[s.festival]
    if kind not in OBJECT_KINDS:
        return f"cannot add a {kind}"
    if s.find(kind) is not None:
        return f"the {kind} is already there"
    s.objects.append(_new_object(s, kind, color or None, side or None))
    return None


def _restore(s: Scene, t: str | None, source: Scene) -> str | None:
    if t == "sun":
        s.sun, s.sun_side = source.sun, source.sun_side
        return None
    if t == "moon":
        s.moon = source.moon
        return None
    if t == "sky":
        s.sky, s.night, s.sun, s.sun_side, s.moon = source.sky, source.night, source.sun, source.sun_side, source.moon
        return None
    if t in ("ground", "puddle", "snow"):
        s.ground = source.ground
        return None
    if t == "banner":
        s.festival = source.festival
        return None
    kinds = DECORATION_KINDS if t == "decoration" else (t,)
    if t not in OBJECT_KINDS and t != "decoration":
        return f"cannot restore the {t}"
    current = s.all_of(kinds)
    original = source.all_of(kinds)
    if not current and not original:
        return f"there is no {t} to restore"
    for o in current:
        s.objects.remove(o)
    for o in original:  # the object as it was, drawn in the current light
        back = SceneObject.from_dict(o.to_dict())
        back.shadow = opposite(s.sun_side)
        s.objects.append(back)
    return None
