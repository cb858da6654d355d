"""The re-edit language of the sandbox editor: a small, regular grammar of imperative clauses.

A re-edit text is split into clauses (on ``;``, ``.``, new lines, and on ``and``/``then``/``,`` when a verb follows).
Each clause starts with a verb and names what it acts on::

    move|shift|slide <thing> [to the] left|right|up|down     move <thing> into|out of the pond
    lower|drop|ground <thing> [to|onto the ground]           raise|lift <thing>
    put|place|set <thing> on the ground | in the pond | back  put out <candle>
    recolor|paint|color|make|turn <thing> <colour>           make|turn <thing>|it <state>
    remove|delete|erase|take away|get rid of <thing>         add|insert|place|put <colour>? <thing> [left|right]
    replace|swap <thing> with|for <thing>                    restore|revert|undo|bring back <thing>
    relight [the scene] from the left|right                  fix|correct the shadows
    put|move|cast the shadows [on|to] the left|right          flip the shadows
    wet|dry the ground   cover <thing> in|with snow|puddles    melt the snow
    blow out|put out|extinguish|snuff out the candle          light the candle
    clear the sky        decorate … for <festival> (hangs the banner)

Things: box, ball, cone, tree, candle, pumpkin, wreath, lantern, decoration (any of the last three), sun, moon,
sky, ground/grass, shadow, puddle, snow. States: wet, dry, snowy, rainy, clear, sunny, dark, night, day, green.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .scene import COLORS, OBJECT_KINDS

VERB_ALIASES: dict[str, str] = {
    "move": "move", "shift": "move", "slide": "move", "push": "move",
    "lower": "lower", "drop": "lower", "ground": "lower", "settle": "lower",
    "raise": "raise", "lift": "raise",
    "put": "put", "place": "put", "set": "put",
    "recolor": "recolor", "recolour": "recolor", "paint": "recolor", "color": "recolor", "colour": "recolor",
    "make": "make", "turn": "make", "change": "make",
    "remove": "remove", "delete": "remove", "erase": "remove", "take": "take",
    "add": "add", "insert": "add",
    "replace": "replace", "swap": "replace",
    "restore": "restore", "revert": "restore", "undo": "restore", "reset": "restore",
    "relight": "relight",
    "fix": "fix", "correct": "fix",
    "flip": "flip", "mirror": "flip",
    "cast": "cast",
    "wet": "wet", "soak": "wet",
    "dry": "dry",
    "cover": "cover",
    "melt": "melt",
    "extinguish": "extinguish", "snuff": "extinguish", "blow": "extinguish",
    "light": "light", "ignite": "light",
    "clear": "clear",
    "decorate": "decorate",
    "sink": "sink", "submerge": "sink",
    "brighten": "brighten", "lighten": "brighten",
    "darken": "darken", "dim": "darken",
}  # fmt: skip
"""Verb word → the handler that parses the rest of the clause."""

PHRASES: tuple[tuple[str, str], ...] = (
    ("get rid of", "remove"),
    ("bring back", "restore"),
    ("lunar new year", "lunar_new_year"),
    ("new year", "lunar_new_year"),
    ("out of", "outof"),
    ("on to", "onto"),
    ("in to", "into"),
)
NOUNS: dict[str, str] = {
    **{k: k for k in OBJECT_KINDS},
    "boxes": "box", "balls": "ball", "cones": "cone", "trees": "tree", "candles": "candle",
    "pumpkins": "pumpkin", "wreaths": "wreath", "lanterns": "lantern",
    "decoration": "decoration", "decorations": "decoration", "ornament": "decoration", "ornaments": "decoration",
    "sun": "sun", "sunlight": "sun", "moon": "moon", "sky": "sky", "weather": "sky",
    "ground": "ground", "grass": "ground", "floor": "ground",
    "shadow": "shadow", "shadows": "shadow", "puddle": "puddle", "puddles": "puddle",
    "snow": "snow", "pond": "pond", "water": "pond", "banner": "banner", "sign": "banner",
    "flame": "flame", "leaves": "foliage", "foliage": "foliage", "crown": "foliage",
}  # fmt: skip
STATES: dict[str, str] = {
    "wet": "wet", "dry": "dry", "snowy": "snowy", "rainy": "rainy", "rain": "rainy", "raining": "rainy",
    "snow": "snowy", "snowing": "snowy", "clear": "clear", "sunny": "clear", "dark": "night", "night": "night",
    "nighttime": "night", "day": "day", "daytime": "day", "daylight": "day", "bright": "day",
    "unlit": "unlit", "lit": "lit",
}  # fmt: skip
FESTIVALS: dict[str, str] = {"halloween": "halloween", "christmas": "christmas", "lunar_new_year": "lunar new year"}
DIRECTIONS = ("left", "right", "up", "down")
FILLER = {"the", "a", "an", "its", "it's", "please", "all", "every", "each", "of", "again", "so", "that", "some",
          "this", "these", "those", "whole", "entire", "instead", "scene", "picture", "image", "now", "too", "side",
          "new", "added", "wrong", "current", "other", "original", "originally", "edited", "edit", "is", "are"}  # fmt: skip

_SPLIT = re.compile(r"[;\n.!]+")
_WORD = re.compile(r"[a-z_']+")


@dataclass(frozen=True)
class Op:
    """One executable operation."""

    action: str
    target: str | None = None
    value: str | None = None


class NotUnderstood(ValueError):
    """A clause outside the grammar; the message says why."""


def split_clauses(text: str) -> list[str]:
    """Split a re-edit text into clauses: on ``;``/``.``/new lines, and on and/then/, before a verb."""
    clauses: list[str] = []
    for part in _SPLIT.split(text):
        words = part.replace(",", " , ").split()
        current: list[str] = []
        i = 0
        while i < len(words):
            w = words[i]
            lw = w.lower()
            if lw in {"and", "then", ","}:
                j = i + 1
                while j < len(words) and words[j].lower() in {"and", "then", ","}:
                    j += 1
                if j < len(words) and words[j].lower() in VERB_ALIASES and current:
                    clauses.append(" ".join(current))
                    current = []
                    i = j
                    continue
                if lw == ",":
                    i += 1
                    continue
            current.append(w)
            i += 1
        if current:
            clauses.append(" ".join(current))
    return [c.strip() for c in clauses if c.strip()]


def _words(clause: str) -> list[str]:
    text = " " + clause.lower().replace("-", " ") + " "
    for phrase, token in PHRASES:
        text = text.replace(f" {phrase} ", f" {token} ")
    return [w for w in _WORD.findall(text) if w not in FILLER]


@dataclass
class _Slots:
    verb: str
    words: list[str]

    def nouns(self, words: list[str] | None = None) -> list[str]:
        return [NOUNS[w] for w in (self.words if words is None else words) if w in NOUNS]

    def colors(self) -> list[str]:
        return [w for w in self.words if w in COLORS]

    def direction(self) -> str | None:
        found = [w for w in self.words if w in DIRECTIONS]
        return found[-1] if found else None

    def side(self) -> str | None:
        found = [w for w in self.words if w in ("left", "right")]
        return found[-1] if found else None

    def states(self, words: list[str] | None = None) -> list[str]:
        return [STATES[w] for w in (self.words if words is None else words) if w in STATES]

    def festival(self) -> str | None:
        found = [FESTIVALS[w] for w in self.words if w in FESTIVALS]
        return found[0] if found else None

    def has(self, *words: str) -> bool:
        return any(w in self.words for w in words)

    def after(self, *markers: str) -> list[str]:
        for i, w in enumerate(self.words):
            if w in markers:
                return self.words[i + 1 :]
        return []

    def before(self, *markers: str) -> list[str]:
        for i, w in enumerate(self.words):
            if w in markers:
                return self.words[:i]
        return list(self.words)


def parse_clause(clause: str) -> list[Op]:
    """Parse one imperative clause into operations; raises :class:`NotUnderstood`."""
    words = _words(clause)
    if not words:
        raise NotUnderstood("empty clause")
    verb = VERB_ALIASES.get(words[0])
    if verb is None:
        raise NotUnderstood(f"unknown verb {words[0]!r}")
    slots = _Slots(verb, words[1:])
    handler = _HANDLERS[verb]
    ops = handler(slots)
    if not ops:
        raise NotUnderstood(f"nothing to {words[0]} in {clause!r}")
    return ops


def parse_instruction(text: str) -> tuple[list[Op], list[str]]:
    """Parse a whole re-edit text: the operations understood, in order, and the clauses that were not."""
    ops: list[Op] = []
    unparsed: list[str] = []
    for clause in split_clauses(text):
        try:
            ops.extend(parse_clause(clause))
        except NotUnderstood:
            unparsed.append(clause)
    return ops, unparsed


# --- handlers: each turns the words after the verb into operations (or raises NotUnderstood) ----------------------


def _one_noun(s: _Slots, words: list[str] | None = None) -> str:
    nouns = s.nouns(words)
    if not nouns:
        raise NotUnderstood("no object named")
    return nouns[0]


def _state_ops(states: list[str], target: str | None) -> list[Op]:
    """``make <target> <state>`` and ``make it <state>`` (target None or sky)."""
    ops: list[Op] = []
    for st in states:
        if target in ("ground", "puddle") and st in ("wet", "dry", "snowy"):
            ops.append(Op("ground", value=st))
        elif target in ("tree", "foliage") and st in ("snowy", "green"):
            ops.append(Op("foliage", "tree", st))
        elif target == "candle" and st in ("lit", "unlit"):
            ops.append(Op("light" if st == "lit" else "extinguish", "candle"))
        elif target in (None, "sky") and st in ("rainy", "snowy", "clear"):
            ops.append(Op("sky", value=st))
        elif target in (None, "sky") and st in ("night", "day"):
            ops.append(Op("time", value=st))
        else:
            raise NotUnderstood(f"cannot make {target or 'it'} {st}")
    return ops


def _h_make(s: _Slots) -> list[Op]:
    tail = s.after("into", "to") or s.words
    head = s.before("into", "to")
    colors = [w for w in tail if w in COLORS]
    nouns = [n for n in (s.nouns(head) or s.nouns(tail)) if n != "snow"]  # "make it snow": snow is the state
    target = nouns[0] if nouns else None
    if target == "tree" and "green" in tail:
        return [Op("foliage", "tree", "green")]
    if colors and target in OBJECT_KINDS:
        return [Op("recolor", target, colors[-1])]
    states = s.states(tail)
    if "day" in states and len(states) > 1:  # "a sunny day", "a snowy winter day": the weather word decides
        states = [st for st in states if st != "day"] + (["day"] if target is None and "night" not in states else [])
    if states:
        return _state_ops(list(dict.fromkeys(states)), target)
    tail_nouns = s.nouns(s.after("into", "to"))
    if (
        target in (*OBJECT_KINDS, "decoration")
        and tail_nouns
        and tail_nouns[-1] in OBJECT_KINDS
        and tail_nouns[-1] != target
    ):
        return [Op("replace", target, tail_nouns[-1])]
    raise NotUnderstood("no colour or state given")


def _h_recolor(s: _Slots) -> list[Op]:
    colors = s.colors()
    target = _one_noun(s)
    if target == "tree" and s.has("green", "snowy", "white"):
        return [Op("foliage", "tree", "snowy" if s.has("snowy", "white") else "green")]
    if not colors:
        raise NotUnderstood("no colour given")
    return [Op("recolor", target, colors[-1])]


def _h_move(s: _Slots) -> list[Op]:
    target = _one_noun(s)
    if s.has("into", "in") and "pond" in s.nouns():
        return [Op("into_pond", target)]
    if s.has("outof") and "pond" in s.nouns():
        return [Op("out_of_pond", target)]
    if s.has("onto", "ground") and target != "ground" and "ground" in s.nouns():
        return [Op("lower", target)]
    direction = s.direction()
    if direction is None:
        raise NotUnderstood("no direction given")
    if target == "sun":
        if direction not in ("left", "right"):
            raise NotUnderstood("the sun moves left or right")
        return [Op("sun_side", value=direction)]
    if target == "shadow":
        if direction not in ("left", "right"):
            raise NotUnderstood("shadows fall left or right")
        return [Op("shadows", _shadow_owner(s), direction)]
    if direction == "up":
        return [Op("raise", target)]
    if direction == "down":
        return [Op("lower", target)]
    return [Op("move", target, direction)]


def _shadow_owner(s: _Slots) -> str | None:
    owners = [n for n in s.nouns() if n in OBJECT_KINDS]
    return owners[0] if owners else None


def _h_lower(s: _Slots) -> list[Op]:
    return [Op("lower", _one_noun(s))]


def _h_raise(s: _Slots) -> list[Op]:
    return [Op("raise", _one_noun(s))]


def _h_put(s: _Slots) -> list[Op]:
    nouns = s.nouns()
    if s.has("out") and nouns and nouns[0] in ("candle", "flame"):
        return [Op("extinguish", "candle")]
    if s.has("back") and nouns:
        return [Op("restore", nouns[0])]
    if nouns and nouns[0] == "shadow":
        side = s.side()
        if side is None:
            raise NotUnderstood("no side for the shadows")
        return [Op("shadows", _shadow_owner(s), side)]
    if nouns and nouns[0] == "snow" and len(nouns) > 1:
        return _cover(nouns[1], "snow")
    if nouns and ("pond" in nouns[1:]) and s.has("in", "into"):
        return [Op("into_pond", nouns[0])]
    if nouns and nouns[0] == "sun" and s.side():
        return [Op("sun_side", value=s.side())]
    if nouns and nouns[0] in OBJECT_KINDS and ("ground" in nouns[1:] or s.has("down")):
        colors = s.colors()
        return [Op("place", nouns[0], colors[-1] if colors else None)]
    return _h_add(s)


def _h_take(s: _Slots) -> list[Op]:
    if s.has("away", "out", "outof", "off"):
        return [Op("remove", _one_noun(s))]
    raise NotUnderstood("take … away/out")


def _h_remove(s: _Slots) -> list[Op]:
    target = _one_noun(s)
    if target == "shadow":
        raise NotUnderstood("shadows follow the sun; move, fix or flip them instead")
    if target == "snow" and len(s.nouns()) > 1:
        return [Op("foliage", "tree", "green")] if "tree" in s.nouns() else [Op("ground", value="dry")]
    return [Op("remove", target)]


def _h_add(s: _Slots) -> list[Op]:
    nouns = s.nouns()
    if not nouns:
        raise NotUnderstood("nothing to add")
    target = nouns[0]
    if target == "puddle":
        return [Op("ground", value="wet")]
    if target == "snow":
        return _cover(nouns[1] if len(nouns) > 1 else "ground", "snow")
    if target in ("sun", "moon"):
        return [Op("add", target)]
    if target == "shadow":
        raise NotUnderstood("shadows follow the sun; move, fix or flip them instead")
    if target not in OBJECT_KINDS and target != "decoration":
        raise NotUnderstood(f"cannot add {target}")
    colors = s.colors()
    side = s.side()
    value = "|".join([colors[-1] if colors else "", side or ""])
    return [Op("add", target, value)]


def _h_replace(s: _Slots) -> list[Op]:
    old = s.nouns(s.before("with", "for", "by", "into"))
    new = s.nouns(s.after("with", "for", "by", "into"))
    if not old or not new:
        raise NotUnderstood("replace <thing> with <thing>")
    if (old[0], new[0]) == ("sun", "moon"):
        return [Op("remove", "sun"), Op("add", "moon")]
    return [Op("replace", old[0], new[0])]


def _h_restore(s: _Slots) -> list[Op]:
    return [Op("restore", _one_noun(s))]


def _h_relight(s: _Slots) -> list[Op]:
    side = s.side()
    if side is None:
        raise NotUnderstood("relight from the left or right")
    return [Op("relight", value=side)]


def _h_fix(s: _Slots) -> list[Op]:
    nouns = s.nouns()
    if (nouns and nouns[0] == "shadow") or (len(nouns) > 1 and "shadow" in nouns):
        return [Op("shadows", _shadow_owner(s), "auto")]
    raise NotUnderstood("only shadows can be fixed without saying how")


def _h_flip(s: _Slots) -> list[Op]:
    if "shadow" in s.nouns():
        return [Op("shadows", _shadow_owner(s), "flip")]
    raise NotUnderstood("only shadows can be flipped")


def _h_cast(s: _Slots) -> list[Op]:
    if "shadow" not in s.nouns() or s.side() is None:
        raise NotUnderstood("cast the shadows left or right")
    return [Op("shadows", _shadow_owner(s), s.side())]


def _h_wet(s: _Slots) -> list[Op]:
    return [Op("ground", value="wet")]


def _h_dry(s: _Slots) -> list[Op]:
    nouns = s.nouns()
    if nouns and nouns[0] not in ("ground", "puddle", "pond"):
        raise NotUnderstood(f"cannot dry {nouns[0]}")
    if nouns and nouns[0] == "pond":
        raise NotUnderstood("the pond cannot be dried")
    return [Op("ground", value="dry")]


def _cover(target: str, material: str) -> list[Op]:
    if material == "snow":
        if target in ("tree", "foliage"):
            return [Op("foliage", "tree", "snowy")]
        if target == "ground":
            return [Op("ground", value="snowy")]
    if material in ("puddle", "pond") and target == "ground":
        return [Op("ground", value="wet")]
    raise NotUnderstood(f"cannot cover {target} with {material}")


def _h_cover(s: _Slots) -> list[Op]:
    nouns = s.nouns()
    if len(nouns) < 2:
        raise NotUnderstood("cover <thing> in|with <snow|puddles>")
    return _cover(nouns[0], nouns[-1])


def _h_melt(s: _Slots) -> list[Op]:
    if "snow" not in s.nouns():
        raise NotUnderstood("only snow melts")
    if "tree" in s.nouns():
        return [Op("foliage", "tree", "green")]
    return [Op("ground", value="dry"), Op("foliage", "tree", "green")]


def _h_extinguish(s: _Slots) -> list[Op]:
    nouns = s.nouns()
    if s.verb == "extinguish" and nouns and nouns[0] in ("candle", "flame"):
        return [Op("extinguish", "candle")]
    raise NotUnderstood("only the candle can be put out")


def _h_light(s: _Slots) -> list[Op]:
    nouns = s.nouns()
    if nouns and nouns[0] in ("candle", "flame"):
        return [Op("light", "candle")]
    side = s.side()
    if side is not None and s.has("from"):
        return [Op("relight", value=side)]
    raise NotUnderstood("light the candle, or light the scene from the left/right")


def _h_clear(s: _Slots) -> list[Op]:
    if "sky" in s.nouns() or not s.nouns():
        return [Op("sky", value="clear")]
    raise NotUnderstood("only the sky clears")


def _h_decorate(s: _Slots) -> list[Op]:
    festival = s.festival()
    if festival is None:
        raise NotUnderstood("decorate for halloween, christmas or lunar new year")
    return [Op("banner", value=festival)]


def _h_sink(s: _Slots) -> list[Op]:
    return [Op("into_pond", _one_noun(s))]


def _h_exposure(s: _Slots) -> list[Op]:
    return [Op("exposure", value="up" if s.verb == "brighten" else "down")]


_HANDLERS = {
    "move": _h_move, "lower": _h_lower, "raise": _h_raise, "put": _h_put, "recolor": _h_recolor, "make": _h_make,
    "remove": _h_remove, "take": _h_take, "add": _h_add, "replace": _h_replace, "restore": _h_restore,
    "relight": _h_relight, "fix": _h_fix, "flip": _h_flip, "cast": _h_cast, "wet": _h_wet, "dry": _h_dry,
    "cover": _h_cover, "melt": _h_melt, "extinguish": _h_extinguish, "light": _h_light, "clear": _h_clear,
    "decorate": _h_decorate, "sink": _h_sink, "brighten": _h_exposure, "darken": _h_exposure,
}  # fmt: skip
