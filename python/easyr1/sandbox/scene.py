"""The sandbox scene model: a small outdoor scene whose every visible property is explicit state.

A scene is a sky (weather, day/night, sun, moon), a ground (dry, wet, snowy), an optional pond, an optional
festival banner and a handful of objects standing on the ground. The renderer draws it, the editor changes it and
the judge reads it — nothing is inferred from pixels.

Rows carry a *scene document* (``scene_json``): the source scene, the current scene (the preliminary edit in the
data, the re-edited result after the editor) and the intent of the requested edit, so that the judge can compare
the true state with what was asked.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from typing import Any

SCENE_VERSION = 1
"""Version of the ``scene_json`` document; readers refuse other versions."""

COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
"""Colours an object can be painted (and the words for them)."""

MOVABLE_KINDS: tuple[str, ...] = ("box", "ball", "cone")
"""Plain objects that scenes contain and edits add, move, recolour or remove."""

DECORATION_OF_FESTIVAL: dict[str, str] = {"halloween": "pumpkin", "christmas": "wreath", "lunar new year": "lantern"}
"""The festival banner's setting and the one decoration that belongs to it."""

DECORATION_KINDS: tuple[str, ...] = tuple(DECORATION_OF_FESTIVAL.values())
FESTIVAL_OF_DECORATION: dict[str, str] = {v: k for k, v in DECORATION_OF_FESTIVAL.items()}
FIXED_COLOR: dict[str, str] = {"pumpkin": "orange", "wreath": "green", "lantern": "red", "candle": "white"}
"""Kinds whose colour is part of what they are (recolouring them is not understood)."""

OBJECT_KINDS: tuple[str, ...] = (*MOVABLE_KINDS, "tree", "candle", *DECORATION_KINDS)
SKIES: tuple[str, ...] = ("clear", "rainy", "snowy")
GROUNDS: tuple[str, ...] = ("dry", "wet", "snowy")
FOLIAGE: tuple[str, ...] = ("green", "snowy")
SIDES: tuple[str, ...] = ("left", "right")
SETTINGS: tuple[str, ...] = ("park", "garden", "yard", "meadow")
"""Words for where the scene is; cosmetic (they change the grass tint), they make instructions read naturally."""

GROUND_Y = 0.86
"""Vertical position (fraction of the image height) where objects stand."""
HORIZON_Y = 0.55
POND_X = 0.8
"""Centre of the pond when there is one (the pond lies in front, on the right)."""
MOVE_STEP = 0.2
"""How far ``move X left/right`` shifts an object (fraction of the width)."""
LIGHT_STEP = 0.25
"""How much ``brighten``/``darken`` change a scene's exposure (``Scene.light``)."""
FLOAT_HEIGHT = 0.3
"""Height above the ground of an object added floating (fraction of the height)."""


def opposite(side: str) -> str:
    return "right" if side == "left" else "left"


@dataclass
class SceneObject:
    kind: str
    color: str
    x: float
    """Horizontal centre, 0 (left edge) .. 1 (right edge)."""
    elevation: float = 0.0
    """Height of the object's base above the ground (0 = standing on it)."""
    shadow: str = "right"
    """Side its shadow falls on (visible only while the sun is in the sky)."""
    lit: bool = False
    """Candles: the flame burns."""
    in_pond: bool = False
    """Standing in (under) the pond's water."""
    foliage: str = "green"
    """Trees: ``green`` or ``snowy``."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SceneObject:
        return cls(**d)


@dataclass
class Scene:
    seed: int
    """Seed of cosmetic randomness (rain streak and snowflake positions)."""
    setting: str = "park"
    sky: str = "clear"
    night: bool = False
    sun: bool = True
    sun_side: str = "left"
    moon: bool = False
    ground: str = "dry"
    pond: bool = False
    festival: str | None = None
    """Text of the festival banner (``halloween`` …), or no banner."""
    objects: list[SceneObject] = field(default_factory=list)
    light: float = 1.0
    """Exposure of the whole picture (1 = normal; the renderer scales the brightness by it)."""

    def find(self, kind: str) -> SceneObject | None:
        for obj in self.objects:
            if obj.kind == kind:
                return obj
        return None

    def all_of(self, kinds: tuple[str, ...] | list[str]) -> list[SceneObject]:
        return [o for o in self.objects if o.kind in kinds]

    def copy(self) -> Scene:
        return copy.deepcopy(self)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["objects"] = [o.to_dict() for o in self.objects]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scene:
        d = dict(d)
        objects = [SceneObject.from_dict(o) for o in d.pop("objects", [])]
        return cls(objects=objects, **d)


@dataclass
class Clause:
    """One requested edit (``kind`` plus its arguments), as the generator wrote it into the instruction."""

    kind: str
    """``sun_side``, ``weather``, ``add_object``, ``in_pond``, ``festival``, ``recolor``, ``remove``, ``move``."""
    args: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "args": dict(self.args)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Clause:
        return cls(kind=d["kind"], args=dict(d.get("args", {})))


@dataclass
class SceneDoc:
    """What ``scene_json`` holds: the source, the current state, and what was asked."""

    source: Scene
    scene: Scene
    """Current state: the preliminary edit in a data row; the re-edited state in the editor's output."""
    intent: list[Clause]
    defects: list[str] = field(default_factory=list)
    """Defects injected into the preliminary edit (for reports; the judge scores the state, not this list)."""
    stage: str = "preliminary"
    """``preliminary`` or ``final``."""
    applied: list[str] = field(default_factory=list)
    """Re-edit operations the editor applied (final stage only)."""

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": SCENE_VERSION,
                "stage": self.stage,
                "source": self.source.to_dict(),
                "scene": self.scene.to_dict(),
                "intent": [c.to_dict() for c in self.intent],
                "defects": list(self.defects),
                "applied": list(self.applied),
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes | dict[str, Any]) -> SceneDoc:
        """Parse a scene document; raises ``ValueError`` naming what is wrong."""
        try:
            d = text if isinstance(text, dict) else json.loads(text)
        except (TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"scene_json is not valid JSON: {exc}") from exc
        if not isinstance(d, dict):
            raise ValueError("scene_json must be a JSON object")
        if d.get("version") != SCENE_VERSION:
            raise ValueError(f"scene_json version {d.get('version')!r} is not {SCENE_VERSION}")
        try:
            return cls(
                source=Scene.from_dict(d["source"]),
                scene=Scene.from_dict(d["scene"]),
                intent=[Clause.from_dict(c) for c in d["intent"]],
                defects=list(d.get("defects", [])),
                stage=str(d.get("stage", "preliminary")),
                applied=list(d.get("applied", [])),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"scene_json is missing or has a malformed field: {exc}") from exc

    def with_scene(self, scene: Scene, *, stage: str, applied: list[str] | None = None) -> SceneDoc:
        return SceneDoc(
            source=self.source,
            scene=scene,
            intent=self.intent,
            defects=self.defects,
            stage=stage,
            applied=list(applied or []),
        )
