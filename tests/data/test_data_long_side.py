"""``data.max_long_side``: the reference's image sizing (images wider or taller than 1024 shrunk to a 1024 long side,
never enlarged), applied before the pixel-count fit; ``compat: reference`` selects it."""

from __future__ import annotations

from dataclasses import replace

import pytest
from PIL import Image

from easyr1.config import ConfigValidationError, load_config
from easyr1.data import build_dataset
from easyr1.data.images import ImageOptions, fit_pixels

WIDE = ImageOptions(min_pixels=64, max_pixels=1 << 24, max_long_side=1024)


def gradient(size: tuple[int, int]) -> Image.Image:
    return Image.linear_gradient("L").convert("RGB").resize(size)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1500, 1000), (1024, 683)),  # the reference's example: 3:2 photo
        ((1000, 3000), (341, 1024)),  # portrait: the long side is the height
        ((1025, 1025), (1024, 1024)),
        ((1024, 700), (1024, 700)),  # at the limit: untouched
        ((300, 200), (300, 200)),  # never enlarged by the long-side rule
    ],
)
def test_long_side_shrink(size, expected):
    image = gradient(size)
    out = fit_pixels(image, WIDE)
    assert out.size == expected
    assert image.size == size  # the input is not modified
    if expected == size:
        assert out is image


def test_without_the_option_the_long_side_is_free():
    assert fit_pixels(gradient((1500, 1000)), replace(WIDE, max_long_side=None)).size == (1500, 1000)


def test_pixel_bounds_apply_after_the_long_side():
    # 2000x160 -> 1024x82 (83968 px) by the long side, then enlarged to >= 262144 px (the reference's min_pixels)
    out = fit_pixels(gradient((2000, 160)), ImageOptions(min_pixels=262144, max_pixels=4194304, max_long_side=1024))
    assert out.width * out.height >= 262144 and out.width > 1024
    assert out.width / out.height == pytest.approx(1024 / 82, rel=0.02)
    # max_pixels below the shrunk size still caps it
    out = fit_pixels(gradient((1500, 1000)), ImageOptions(min_pixels=64, max_pixels=100_000, max_long_side=1024))
    assert out.width * out.height <= 100_000


def test_dataset_reads_with_the_configured_long_side(helpers, tmp_path):
    big = gradient((1500, 1000))
    rows = [helpers.seed_row(f"r{i}", "add", big, big, "short", "detailed") for i in range(2)]
    path = helpers.write_seed_parquet(rows, tmp_path / "big.parquet")
    for long_side, expected in ((1024, (1024, 683)), (None, (1500, 1000))):
        cfg = replace(helpers.data_config(path), max_long_side=long_side, max_pixels=1 << 24)
        sample = next(iter(build_dataset(cfg, "train").iter_epoch(0)))[1]
        assert sample.source_image.size == expected and sample.edited_image.size == expected
        assert sample.source_original_size == (1500, 1000)


def test_compat_reference_sets_it_and_the_key_overrides():
    assert load_config(None, ["compat=reference"]).data.max_long_side == 1024
    assert load_config(None, []).data.max_long_side is None
    assert load_config(None, ["compat=reference", "data.max_long_side=2048"]).data.max_long_side == 2048


def test_non_positive_long_side_is_rejected():
    with pytest.raises(ConfigValidationError, match=r"data\.max_long_side"):
        load_config(None, ["data.max_long_side=0"])
    with pytest.raises(ConfigValidationError, match=r"data\.prompt_layout"):
        load_config(None, ["data.prompt_layout=verl"])
