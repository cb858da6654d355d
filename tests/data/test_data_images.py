"""Image decoding: base64 forms, EXIF orientation, alpha, pixel-range fitting, and the errors it reports."""

from __future__ import annotations

import base64
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from easyr1.data.errors import (
    EXTREME_ASPECT_RATIO,
    NOT_AN_IMAGE,
    UNDECODABLE_BASE64,
    WRONG_TYPE,
    ZERO_SIZE_IMAGE,
    FieldError,
)
from easyr1.data.images import ImageOptions, decode_base64, decode_base64_image, decode_image_bytes, fit_pixels

WIDE = ImageOptions(min_pixels=1, max_pixels=1 << 30)


def test_base64_forms_decode_to_the_same_bytes(helpers):
    raw = helpers.png_bytes(helpers.make_image(1))
    text = base64.b64encode(raw).decode()
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    assert decode_base64(text, "c") == raw
    assert decode_base64(text.encode(), "c") == raw
    assert decode_base64("data:image/png;base64," + text, "c") == raw
    assert decode_base64(wrapped, "c") == raw


@pytest.mark.parametrize("value", ["not base64 at all!", "abc", "data:image/png,AAAA", "ÿÿÿÿ"])
def test_bad_base64_is_reported(value):
    with pytest.raises(FieldError) as info:
        decode_base64(value, "src_img_b64")
    assert info.value.reason == UNDECODABLE_BASE64
    assert info.value.column == "src_img_b64"


def test_base64_of_wrong_type():
    with pytest.raises(FieldError) as info:
        decode_base64(12, "c")
    assert info.value.reason == WRONG_TYPE


def test_decoded_image_is_rgb_with_pixels_intact(helpers):
    image = helpers.make_image(3, (40, 30))
    decoded = decode_base64_image(helpers.encode_image_base64(image), "c", WIDE)
    assert decoded.image.mode == "RGB"
    assert decoded.original_size == (40, 30)
    assert decoded.image.tobytes() == image.tobytes()


def test_exif_orientation_is_applied(helpers):
    image = helpers.make_image(4, (40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs a 90° clockwise turn
    buffer = io.BytesIO()
    image.save(buffer, "PNG", exif=exif)
    decoded = decode_image_bytes(buffer.getvalue(), "c", WIDE)
    assert decoded.image.size == (20, 40)
    assert decoded.image.tobytes() == image.transpose(Image.Transpose.ROTATE_270).tobytes()


def test_alpha_is_flattened_on_white(helpers):
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red
    decoded = decode_image_bytes(helpers.png_bytes(rgba), "c", WIDE)
    assert decoded.image.mode == "RGB"
    assert decoded.image.getpixel((0, 0)) == (255, 255, 255)


def test_grayscale_becomes_rgb(helpers):
    decoded = decode_image_bytes(helpers.png_bytes(Image.new("L", (8, 8), 7)), "c", WIDE)
    assert decoded.image.mode == "RGB" and decoded.image.getpixel((3, 3)) == (7, 7, 7)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", ZERO_SIZE_IMAGE),
        (b"this is text, not pixels", NOT_AN_IMAGE),
    ],
)
def test_undecodable_bytes(data, reason):
    with pytest.raises(FieldError) as info:
        decode_image_bytes(data, "c", WIDE)
    assert info.value.reason == reason


def test_truncated_image_is_not_an_image(helpers):
    raw = helpers.png_bytes(helpers.make_image(5, (64, 64)))
    with pytest.raises(FieldError) as info:
        decode_image_bytes(raw[: len(raw) // 2], "c", WIDE)
    assert info.value.reason == NOT_AN_IMAGE


def test_png_with_zero_width_is_zero_size(helpers):
    raw = bytearray(helpers.png_bytes(helpers.make_image(6, (8, 8))))
    raw[16:20] = (0).to_bytes(4, "big")  # IHDR width
    with pytest.raises(FieldError) as info:
        decode_image_bytes(bytes(raw), "c", WIDE)
    assert info.value.reason == ZERO_SIZE_IMAGE


def test_extreme_aspect_ratio_is_refused(helpers):
    with pytest.raises(FieldError) as info:
        decode_image_bytes(helpers.png_bytes(Image.new("RGB", (402, 2))), "c", WIDE)
    assert info.value.reason == EXTREME_ASPECT_RATIO


@settings(max_examples=60, deadline=None)
@given(
    w=st.integers(1, 600),
    h=st.integers(1, 600),
    min_pixels=st.integers(1, 5000),
    extra=st.integers(0, 50000),
)
def test_fit_pixels_lands_in_range_and_keeps_aspect(w, h, min_pixels, extra):
    if max(w, h) / min(w, h) > 50:
        return
    options = ImageOptions(min_pixels=min_pixels, max_pixels=min_pixels + extra + 400)
    fitted = fit_pixels(Image.new("RGB", (w, h)), options)
    fw, fh = fitted.size
    if options.min_pixels <= w * h <= options.max_pixels:
        assert (fw, fh) == (w, h)
        return
    if w * h > options.max_pixels:
        assert fw * fh <= options.max_pixels
    else:
        assert fw * fh >= options.min_pixels
    # aspect preserved up to rounding of one pixel per side
    assert abs(fw / fh - w / h) <= (w / h) * (1 / min(fw, fh) + 1 / min(w, h)) + 1e-9
