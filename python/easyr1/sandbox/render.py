"""Draw a :class:`~easyr1.sandbox.scene.Scene` with Pillow at any size (64–512 px and beyond), deterministically.

Shapes are drawn on a supersampled canvas and downscaled, so small images stay legible. Cosmetic randomness (rain
streaks, snowflakes, puddles) comes from the scene's own seed, so the same scene always gives the same pixels.
"""

from __future__ import annotations

import random
from functools import lru_cache

from PIL import Image, ImageDraw, ImageEnhance, ImageFont

from .scene import GROUND_Y, HORIZON_Y, POND_X, Scene, SceneObject

RGB = tuple[int, int, int]
TREE_GROUND_Y = 0.72

PAINT: dict[str, RGB] = {
    "red": (210, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 210),
    "yellow": (235, 205, 30),
    "purple": (140, 60, 170),
    "orange": (240, 130, 20),
    "white": (245, 245, 240),
}
SETTING_GRASS: dict[str, RGB] = {
    "park": (95, 160, 75),
    "garden": (80, 150, 70),
    "yard": (115, 165, 80),
    "meadow": (125, 170, 70),
}
FESTIVAL_ACCENT: dict[str, RGB] = {
    "halloween": (240, 130, 20),
    "christmas": (30, 130, 50),
    "lunar new year": (210, 30, 30),
}


def _shade(color: RGB, factor: float) -> RGB:
    return tuple(max(0, min(255, round(c * factor))) for c in color)  # type: ignore[return-value]


def _sky_color(scene: Scene) -> RGB:
    day = {"clear": (135, 190, 235), "rainy": (120, 128, 140), "snowy": (190, 195, 205)}[scene.sky]
    return _shade(day, 0.3) if scene.night else day


def _ground_color(scene: Scene) -> RGB:
    if scene.ground == "snowy":
        base: RGB = (236, 239, 244)
    elif scene.ground == "wet":
        base = _shade(SETTING_GRASS.get(scene.setting, SETTING_GRASS["park"]), 0.7)
    else:
        base = SETTING_GRASS.get(scene.setting, SETTING_GRASS["park"])
    return _shade(base, 0.45) if scene.night else base


@lru_cache(maxsize=16)
def _font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=px)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


class _Canvas:
    """Scene coordinates (fractions of width/height) → pixels on a supersampled canvas."""

    def __init__(self, width: int, height: int):
        self.scale = 4 if max(width, height) <= 128 else 2
        self.w, self.h = width * self.scale, height * self.scale
        self.image = Image.new("RGB", (self.w, self.h))
        self.draw = ImageDraw.Draw(self.image)

    def box(self, x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
        return (round(x0 * self.w), round(y0 * self.h), round(x1 * self.w), round(y1 * self.h))

    def pt(self, x: float, y: float) -> tuple[int, int]:
        return (round(x * self.w), round(y * self.h))

    def width(self, frac: float) -> int:
        return max(1, round(frac * self.w))


def render_scene(scene: Scene, size: int | tuple[int, int] = 64) -> Image.Image:
    """Render ``scene`` to an RGB image of ``size`` pixels (a side, or ``(width, height)``)."""
    width, height = (size, size) if isinstance(size, int) else size
    if min(width, height) < 8:
        raise ValueError(f"image size {width}x{height} is too small (minimum 8 px)")
    cv = _Canvas(width, height)
    rng = random.Random(scene.seed)
    d = cv.draw
    d.rectangle(cv.box(0, 0, 1, HORIZON_Y), fill=_sky_color(scene))
    ground = _ground_color(scene)
    d.rectangle(cv.box(0, HORIZON_Y, 1, 1), fill=ground)
    _draw_sky_bodies(cv, scene)
    if scene.ground == "wet":
        _draw_puddles(cv, scene, rng)
    if scene.pond:
        d.ellipse(
            cv.box(POND_X - 0.17, 0.83, POND_X + 0.17, 0.97), fill=_shade((60, 110, 190), 0.5 if scene.night else 1)
        )
    if scene.festival:
        _draw_banner(cv, scene.festival)
    # Shadows first (they lie on the ground), then objects back to front: trees behind the rest.
    if scene.sun:
        for obj in scene.objects:
            _draw_shadow(cv, obj, ground)
    for obj in sorted(scene.objects, key=lambda o: (o.kind != "tree", o.x)):
        _draw_object(cv, obj, night=scene.night)
        if obj.in_pond:
            _draw_water_over(cv, obj, night=scene.night)
    if scene.sky in ("rainy", "snowy"):
        _draw_precipitation(cv, scene, rng)
    image = cv.image.resize((width, height), Image.Resampling.LANCZOS)
    if abs(scene.light - 1.0) > 1e-6:
        image = ImageEnhance.Brightness(image).enhance(max(0.0, scene.light))
    return image


def _draw_sky_bodies(cv: _Canvas, scene: Scene) -> None:
    if scene.sun:
        sx = 0.16 if scene.sun_side == "left" else 0.84
        cv.draw.ellipse(cv.box(sx - 0.08, 0.08, sx + 0.08, 0.24), fill=(255, 215, 40))
    if scene.moon:
        mx = 0.84 if scene.sun and scene.sun_side == "left" else 0.16
        cv.draw.ellipse(cv.box(mx - 0.07, 0.08, mx + 0.07, 0.22), fill=(240, 240, 215))
        cv.draw.ellipse(cv.box(mx - 0.03, 0.06, mx + 0.11, 0.2), fill=_sky_color(scene))


def _draw_puddles(cv: _Canvas, scene: Scene, rng: random.Random) -> None:
    color = _shade((95, 135, 185), 0.5 if scene.night else 1)
    for _ in range(4):
        x = rng.uniform(0.08, 0.62)
        y = rng.uniform(HORIZON_Y + 0.06, 0.97)
        w = rng.uniform(0.07, 0.14)
        cv.draw.ellipse(cv.box(x - w, y - 0.025, x + w, y + 0.025), fill=color)


def _draw_banner(cv: _Canvas, festival: str) -> None:
    accent = FESTIVAL_ACCENT.get(festival, (90, 90, 90))
    cv.draw.rectangle(cv.box(0.27, 0.03, 0.73, 0.13), fill=(250, 250, 245), outline=accent, width=cv.width(0.012))
    font = _font(max(6, round(0.06 * cv.h)))
    cv.draw.text(cv.pt(0.5, 0.08), festival.upper(), fill=accent, font=font, anchor="mm")


def _ground_level(obj: SceneObject) -> float:
    """Where the object meets the ground: trees stand further back (higher in the picture)."""
    return TREE_GROUND_Y if obj.kind == "tree" else GROUND_Y


def _draw_shadow(cv: _Canvas, obj: SceneObject, ground: RGB) -> None:
    reach = 0.16 if obj.kind == "tree" else 0.1
    half = 0.07 if obj.kind == "tree" else 0.05
    if obj.elevation > 0:  # a floating object casts a smaller, detached shadow
        reach, half = reach * 0.6, half * 0.7
    x0, x1 = (obj.x, obj.x + reach) if obj.shadow == "right" else (obj.x - reach, obj.x)
    y = _ground_level(obj)
    cv.draw.ellipse(cv.box(x0 - half * 0.3, y - 0.02, x1 + half * 0.3, y + 0.025), fill=_shade(ground, 0.55))


def _draw_object(cv: _Canvas, obj: SceneObject, *, night: bool) -> None:
    d = cv.draw
    x, base = obj.x, _ground_level(obj) - obj.elevation
    dim = 0.6 if night else 1.0
    color = _shade(PAINT.get(obj.color, (128, 128, 128)), dim)
    outline = _shade(color, 0.6)
    lw = cv.width(0.008)
    if obj.kind == "tree":
        d.rectangle(cv.box(x - 0.022, base - 0.2, x + 0.022, base), fill=_shade((110, 75, 40), dim))
        crown = (240, 242, 248) if obj.foliage == "snowy" else (35, 125, 50)
        d.ellipse(cv.box(x - 0.12, base - 0.42, x + 0.12, base - 0.16), fill=_shade(crown, dim))
    elif obj.kind == "box":
        d.rectangle(cv.box(x - 0.07, base - 0.14, x + 0.07, base), fill=color, outline=outline, width=lw)
    elif obj.kind == "ball":
        d.ellipse(cv.box(x - 0.065, base - 0.13, x + 0.065, base), fill=color, outline=outline, width=lw)
    elif obj.kind == "cone":
        d.polygon([cv.pt(x - 0.07, base), cv.pt(x + 0.07, base), cv.pt(x, base - 0.17)], fill=color, outline=outline)
    elif obj.kind == "candle":
        d.rectangle(cv.box(x - 0.02, base - 0.11, x + 0.02, base), fill=_shade(PAINT["white"], dim), outline=outline)
        if obj.lit:
            d.ellipse(cv.box(x - 0.045, base - 0.2, x + 0.045, base - 0.11), fill=(255, 230, 120))
            d.polygon(
                [cv.pt(x - 0.018, base - 0.12), cv.pt(x + 0.018, base - 0.12), cv.pt(x, base - 0.19)],
                fill=(255, 120, 0),
            )
    elif obj.kind == "pumpkin":
        d.ellipse(cv.box(x - 0.075, base - 0.11, x + 0.075, base), fill=color, outline=outline, width=lw)
        d.rectangle(cv.box(x - 0.01, base - 0.14, x + 0.01, base - 0.1), fill=_shade((40, 120, 40), dim))
    elif obj.kind == "wreath":
        d.rectangle(cv.box(x - 0.01, base - 0.06, x + 0.01, base), fill=_shade((110, 75, 40), dim))
        d.ellipse(cv.box(x - 0.065, base - 0.19, x + 0.065, base - 0.06), outline=color, width=cv.width(0.03))
        d.ellipse(cv.box(x - 0.02, base - 0.09, x + 0.02, base - 0.05), fill=_shade(PAINT["red"], dim))
    elif obj.kind == "lantern":
        d.rectangle(cv.box(x - 0.01, base - 0.07, x + 0.01, base), fill=_shade((110, 75, 40), dim))
        d.ellipse(cv.box(x - 0.055, base - 0.2, x + 0.055, base - 0.06), fill=color, outline=outline, width=lw)
        d.rectangle(cv.box(x - 0.03, base - 0.215, x + 0.03, base - 0.195), fill=_shade(PAINT["yellow"], dim))
    else:
        raise ValueError(f"cannot draw an object of kind {obj.kind!r}")


def _draw_water_over(cv: _Canvas, obj: SceneObject, *, night: bool) -> None:
    """The object stands in the pond: cover its lower part with translucent water."""
    overlay = Image.new("RGBA", cv.image.size, (0, 0, 0, 0))
    od = ImageDraw.Draw(overlay)
    water = (*_shade((60, 110, 190), 0.5 if night else 1), 190)
    od.ellipse(cv.box(obj.x - 0.17, GROUND_Y - 0.08, obj.x + 0.17, GROUND_Y + 0.11), fill=water)
    cv.image.paste(Image.alpha_composite(cv.image.convert("RGBA"), overlay).convert("RGB"))
    cv.draw = ImageDraw.Draw(cv.image)


def _draw_precipitation(cv: _Canvas, scene: Scene, rng: random.Random) -> None:
    if scene.sky == "rainy":
        color = (170, 180, 205) if not scene.night else (90, 95, 120)
        for _ in range(40):
            x, y = rng.uniform(0, 1), rng.uniform(0, 0.95)
            cv.draw.line([cv.pt(x, y), cv.pt(x - 0.02, y + 0.06)], fill=color, width=cv.width(0.006))
    else:
        for _ in range(60):
            x, y = rng.uniform(0, 1), rng.uniform(0, 0.97)
            r = 0.008
            cv.draw.ellipse(cv.box(x - r, y - r, x + r, y + r), fill=(255, 255, 255))
