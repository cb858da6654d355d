"""The sandbox judge's rules: what is wrong with a scene, and how much each problem costs per dimension.

Three families of checks run on the *current* scene of a scene document:

* **consistency** — the world's own laws, whatever was asked: shadows fall away from the sun, nothing floats, wet
  ground needs rain and rain wets the ground, snow whitens the trees, no sun at night or behind rain clouds, a lit
  flame does not burn under water, decorations match the festival banner;
* **intent** — each requested edit (the row's clauses) is present in the result;
* **preservation** — what the request did not name is as it was in the source (no other object recoloured,
  moved, removed or added; no unrequested change of weather, time, sun or banner).

Each violation has a severity per dimension; a dimension's score is ``10 · Π (1 − severity)`` over the violations,
also multiplied by ``(1 − SPILLOVER)`` per violation for every dimension (a judge looking at a flawed image marks
everything a little lower). Scores are therefore graded: every violation removed raises the score, and fixing more
defects never lowers it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..reward.judge.protocol import DIMENSIONS
from .scene import (
    DECORATION_KINDS,
    DECORATION_OF_FESTIVAL,
    FESTIVAL_OF_DECORATION,
    LIGHT_STEP,
    MOVE_STEP,
    Clause,
    Scene,
    SceneDoc,
)

PG, EC, CS, LC, TA = DIMENSIONS
SPILLOVER = 0.08
"""Share every dimension loses per violation, on top of the violation's own severities."""
MOVED_TOLERANCE = 0.08
"""An object displaced by more than this (fraction of the width) counts as moved."""
LIGHT_TOLERANCE = 0.1
"""An exposure this close to the asked-for one (or to the source's, when none was asked for) counts as right."""

SEVERITY: dict[str, dict[str, float]] = {
    # consistency
    "shadow_toward_sun": {PG: 0.75, LC: 0.1},
    "floating_object": {PG: 0.7, LC: 0.25},
    "dry_ground_in_rain": {EC: 0.75, LC: 0.2},
    "wet_ground_under_clear_sky": {EC: 0.75, LC: 0.2},
    "snowfall_on_bare_ground": {EC: 0.5},
    "green_tree_in_snow": {EC: 0.75, LC: 0.15},
    "snowy_tree_without_snow": {EC: 0.5},
    "sun_at_night": {LC: 0.75, EC: 0.25},
    "sun_behind_clouds": {EC: 0.4, LC: 0.2},
    "lit_candle_under_water": {LC: 0.75, PG: 0.25},
    "decoration_of_other_festival": {CS: 0.75, TA: 0.1},
    "decoration_without_festival": {CS: 0.35},
    # intent
    "requested_edit_missing": {TA: 0.7},
    "requested_colour_wrong": {TA: 0.35},
    "object_misplaced": {PG: 0.6, TA: 0.5},
    "exposure_wrong": {EC: 0.6, LC: 0.5},
    "festival_decoration_missing": {CS: 0.4, TA: 0.3},
    # preservation
    "object_removed": {TA: 0.45},
    "object_recoloured": {TA: 0.4},
    "object_moved": {TA: 0.3},
    "object_added": {TA: 0.3},
    "candle_changed": {TA: 0.3},
    "scene_changed": {TA: 0.4},
}
"""Severity of each violation kind per dimension (0..1)."""

INTENT_DIMENSION: dict[str, str] = {
    "sun_side": PG,
    "weather": EC,
    "add_object": PG,
    "in_pond": LC,
    "festival": CS,
}
"""A missing requested edit also costs 0.3 in the dimension its clause is about (recolour, remove and move are
about the target itself, which the base severity already covers)."""


@dataclass
class Violation:
    kind: str
    detail: str
    weight: float = 1.0
    """Scales the severities (e.g. the share of shadows that point the wrong way)."""
    extra: dict[str, float] | None = None

    def severities(self) -> dict[str, float]:
        sev = dict(SEVERITY[self.kind])
        for dim, value in (self.extra or {}).items():
            sev[dim] = sev.get(dim, 0.0) + value
        return {d: min(1.0, s * self.weight) for d, s in sev.items()}


def consistency_violations(s: Scene) -> list[Violation]:
    out: list[Violation] = []
    if s.sun and s.objects:
        wrong = [o for o in s.objects if o.shadow == s.sun_side]
        if wrong:
            names = ", ".join(sorted({o.kind for o in wrong}))
            out.append(
                Violation("shadow_toward_sun", f"shadows of {names} fall toward the sun", len(wrong) / len(s.objects))
            )
    for o in s.objects:
        if o.elevation > 0.01:
            out.append(Violation("floating_object", f"the {o.kind} floats above the ground"))
    if s.sky == "rainy" and s.ground == "dry":
        out.append(Violation("dry_ground_in_rain", "it rains but the ground is dry"))
    if s.sky == "clear" and s.ground == "wet":
        out.append(Violation("wet_ground_under_clear_sky", "the sky is clear but the ground is wet"))
    if s.sky == "snowy" and s.ground != "snowy":
        out.append(Violation("snowfall_on_bare_ground", "it snows but no snow lies on the ground"))
    trees = s.all_of(("tree",))
    snowy_world = s.sky == "snowy" or s.ground == "snowy"
    if snowy_world and trees:
        green = [t for t in trees if t.foliage == "green"]
        if green:
            out.append(Violation("green_tree_in_snow", "summer foliage in the snow", len(green) / len(trees)))
    if not snowy_world and any(t.foliage == "snowy" for t in trees):
        out.append(Violation("snowy_tree_without_snow", "snow on the tree but nowhere else"))
    if s.sun and s.night:
        out.append(Violation("sun_at_night", "the sun shines at night"))
    if s.sun and s.sky in ("rainy", "snowy"):
        out.append(Violation("sun_behind_clouds", f"the sun shines through a {s.sky} sky"))
    for o in s.all_of(("candle",)):
        if o.lit and o.in_pond:
            out.append(Violation("lit_candle_under_water", "a lit candle burns under water"))
    decorations = s.all_of(DECORATION_KINDS)
    for o in decorations:
        if s.festival and FESTIVAL_OF_DECORATION[o.kind] != s.festival:
            out.append(Violation("decoration_of_other_festival", f"a {o.kind} does not belong to {s.festival}"))
        elif not s.festival:
            out.append(Violation("decoration_without_festival", f"a {o.kind} without a festival"))
    return out


def intent_violations(clause: Clause, s: Scene, source: Scene) -> list[Violation]:
    """Is the requested edit ``clause`` present in ``s``?"""
    k, a = clause.kind, clause.args
    extra = {INTENT_DIMENSION[k]: 0.3} if k in INTENT_DIMENSION else None

    def missing(detail: str) -> list[Violation]:
        return [Violation("requested_edit_missing", detail, extra=extra)]

    if k == "sun_side":
        return [] if s.sun and s.sun_side == a["side"] else missing(f"the sun is not on the {a['side']}")
    if k == "weather":
        if "sky" in a and s.sky != a["sky"]:
            return missing(f"the sky is not {a['sky']}")
        if "night" in a and s.night != a["night"]:
            return missing("it is not night" if a["night"] else "it is not day")
        return []
    if k == "add_object":
        obj = s.find(a["object"])
        if obj is None:
            return missing(f"no {a['object']} was added")
        if obj.color != a["color"]:
            return [Violation("requested_colour_wrong", f"the {a['object']} is not {a['color']}")]
        return []
    if k == "in_pond":
        obj = s.find(a["object"])
        return [] if obj is not None and obj.in_pond else missing(f"the {a['object']} is not in the pond")
    if k == "festival":
        out: list[Violation] = []
        if s.festival != a["festival"]:
            out += missing(f"no {a['festival']} banner")
        if s.find(DECORATION_OF_FESTIVAL[a["festival"]]) is None:
            out.append(Violation("festival_decoration_missing", f"no {DECORATION_OF_FESTIVAL[a['festival']]}"))
        return out
    if k == "recolor":
        obj = s.find(a["object"])
        return [] if obj is not None and obj.color == a["color"] else missing(f"the {a['object']} is not {a['color']}")
    if k == "remove":
        return [] if s.find(a["object"]) is None else missing(f"the {a['object']} is still there")
    if k == "move":
        obj, before = s.find(a["object"]), source.find(a["object"])
        if obj is None or before is None:
            return missing(f"the {a['object']} is gone")
        dx = obj.x - before.x
        moved = dx < -MOVED_TOLERANCE if a["direction"] == "left" else dx > MOVED_TOLERANCE
        return [] if moved else missing(f"the {a['object']} was not moved {a['direction']}")
    if k == "exposure":
        off = abs(s.light - a["level"])
        if off <= LIGHT_TOLERANCE:
            return []
        # graded by distance: a step off is the preliminary edit, two steps (the wrong repair) is worse
        return [Violation("exposure_wrong", f"the light is {off:.2f} off dusk", off / LIGHT_STEP)]
    if k == "center":
        obj = s.find(a["object"])
        if obj is None:
            return missing(f"the {a['object']} is gone")
        off = abs(obj.x - a["x"])
        if off <= MOVED_TOLERANCE:
            return []
        # graded by distance: a step off is the preliminary edit, two steps (the wrong repair) is worse
        return [Violation("object_misplaced", f"the {a['object']} is {off:.2f} off the middle", off / MOVE_STEP)]
    raise ValueError(f"unknown clause kind {k!r}")


def preservation_violations(intent: list[Clause], s: Scene, source: Scene) -> list[Violation]:
    """What the request did not name must be as it was."""
    named = {c.args["object"] for c in intent if "object" in c.args}
    allowed_new = set(named)
    for c in intent:
        if c.kind == "festival":
            allowed_new.add(DECORATION_OF_FESTIVAL[c.args["festival"]])
    out: list[Violation] = []
    for before in source.objects:
        if before.kind in named:
            continue
        now = s.find(before.kind)
        if now is None:
            out.append(Violation("object_removed", f"the {before.kind} was removed"))
            continue
        if now.color != before.color:
            out.append(Violation("object_recoloured", f"the {before.kind} was recoloured {now.color}"))
        if abs(now.x - before.x) > MOVED_TOLERANCE:
            out.append(Violation("object_moved", f"the {before.kind} was moved"))
        if now.kind == "candle" and (now.lit != before.lit or now.in_pond != before.in_pond):
            out.append(Violation("candle_changed", "the candle was changed"))
    source_kinds = {o.kind for o in source.objects}
    for o in s.objects:
        if o.kind not in source_kinds and o.kind not in allowed_new:
            out.append(Violation("object_added", f"a {o.kind} was added"))
    kinds = {c.kind for c in intent}
    if "weather" not in kinds and (s.sky != source.sky or s.night != source.night):
        out.append(Violation("scene_changed", "the weather or time of day was changed"))
    if "sun_side" not in kinds and "weather" not in kinds:
        if s.sun and source.sun and s.sun_side != source.sun_side:
            out.append(Violation("scene_changed", "the sun was moved"))
        if s.sun != source.sun:
            out.append(Violation("scene_changed", "the sun was removed" if source.sun else "a sun was added"))
    if "weather" not in kinds and s.moon != source.moon:
        out.append(Violation("scene_changed", "the moon was removed" if source.moon else "a moon was added"))
    if "exposure" not in kinds and abs(s.light - source.light) > LIGHT_TOLERANCE:
        out.append(Violation("scene_changed", "the light was changed"))
    if "festival" not in kinds and s.festival != source.festival:
        out.append(Violation("scene_changed", "the festival banner was changed"))
    return out


def all_violations(doc: SceneDoc) -> list[Violation]:
    s, src = doc.scene, doc.source
    out = consistency_violations(s)
    for clause in doc.intent:
        out += intent_violations(clause, s, src)
    out += preservation_violations(doc.intent, s, src)
    return out


def score_violations(violations: list[Violation]) -> dict[str, float]:
    """Five 0..10 scores from a list of violations (10 each when there is none)."""
    scores = dict.fromkeys(DIMENSIONS, 10.0)
    for v in violations:
        sev = v.severities()
        for d in DIMENSIONS:
            scores[d] *= (1.0 - sev.get(d, 0.0)) * (1.0 - SPILLOVER * v.weight)
    return {d: round(x, 4) for d, x in scores.items()}


def score_doc(doc: SceneDoc) -> tuple[dict[str, float], list[Violation]]:
    violations = all_violations(doc)
    return score_violations(violations), violations
