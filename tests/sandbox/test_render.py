from __future__ import annotations

import numpy as np
import pytest

from easyr1.sandbox import Scene, SceneObject, generate_row, render_scene


def _pixels(img):
    return np.asarray(img, dtype=np.int16)


@pytest.mark.parametrize("size", [64, 128, 512])
def test_rendering_is_deterministic_at_every_size(size):
    row = generate_row(3, 7)
    a = render_scene(row.doc.scene, size)
    b = render_scene(generate_row(3, 7).doc.scene, size)  # regenerated from the seed, not the same object
    assert a.size == (size, size) and a.mode == "RGB"
    assert a.tobytes() == b.tobytes()


def test_non_square_size():
    img = render_scene(generate_row(0, 0).doc.scene, (96, 64))
    assert img.size == (96, 64)


def test_too_small_is_an_error():
    with pytest.raises(ValueError, match="too small"):
        render_scene(Scene(seed=0), 4)


def test_preliminary_differs_from_source_in_pixels(mixed_rows):
    for row in mixed_rows[:30]:
        src = _pixels(render_scene(row.doc.source, 64))
        prelim = _pixels(render_scene(row.doc.scene, 64))
        assert np.abs(src - prelim).sum() > 0, row.id


def test_state_changes_are_visible():
    base = Scene(seed=1, sun_side="left", objects=[SceneObject("box", "red", 0.3, shadow="right")])
    variants = []
    for change in ("sky", "ground", "shadow", "color", "elevation", "night", "festival"):
        s = base.copy()
        if change == "sky":
            s.sky, s.sun = "rainy", False
        elif change == "ground":
            s.ground = "wet"
        elif change == "shadow":
            s.objects[0].shadow = "left"
        elif change == "color":
            s.objects[0].color = "blue"
        elif change == "elevation":
            s.objects[0].elevation = 0.3
        elif change == "night":
            s.night = True
        else:
            s.festival = "halloween"
        variants.append(_pixels(render_scene(s, 64)))
    ref = _pixels(render_scene(base, 64))
    for change, img in zip(
        ("sky", "ground", "shadow", "color", "elevation", "night", "festival"), variants, strict=True
    ):
        assert np.abs(img - ref).mean() > 0.2, change


def test_every_object_kind_renders():
    for kind in ("box", "ball", "cone", "tree", "candle", "pumpkin", "wreath", "lantern"):
        s = Scene(seed=0, objects=[SceneObject(kind, "red", 0.5, lit=True)])
        assert np.abs(_pixels(render_scene(s, 64)) - _pixels(render_scene(Scene(seed=0), 64))).sum() > 0, kind
    with pytest.raises(ValueError, match="cannot draw"):
        render_scene(Scene(seed=0, objects=[SceneObject("unicorn", "red", 0.5)]), 64)
