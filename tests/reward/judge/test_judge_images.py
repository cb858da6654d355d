"""Images are sent as RGB JPEG with the long side capped, never enlarged, hashed for the cache."""

from __future__ import annotations

import base64
import io

from PIL import Image

from easyr1.reward.judge.images import encode_image, estimated_image_tokens


def _decode(data_url: str) -> Image.Image:
    assert data_url.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))


def test_long_side_capped_aspect_kept() -> None:
    encoded = encode_image(Image.new("RGB", (1200, 600), (10, 20, 30)), max_side=512, quality=90)
    img = _decode(encoded.data_url)
    assert img.format == "JPEG" and img.size == (512, 256) == (encoded.width, encoded.height)


def test_small_images_not_enlarged_and_portrait_capped() -> None:
    assert encode_image(Image.new("RGB", (64, 48)), max_side=512, quality=90).width == 64
    tall = encode_image(Image.new("RGB", (300, 900)), max_side=450, quality=90)
    assert (tall.width, tall.height) == (150, 450)


def test_transparency_flattened_on_white() -> None:
    rgba = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    img = _decode(encode_image(rgba, max_side=512, quality=95).data_url)
    assert img.mode == "RGB"
    assert min(img.getpixel((20, 20))) > 240  # white, not black


def test_hash_is_stable_and_content_sensitive() -> None:
    a = encode_image(Image.new("RGB", (50, 50), (1, 2, 3)), max_side=512, quality=90)
    b = encode_image(Image.new("RGB", (50, 50), (1, 2, 3)), max_side=512, quality=90)
    c = encode_image(Image.new("RGB", (50, 50), (200, 2, 3)), max_side=512, quality=90)
    assert a.sha256 == b.sha256 != c.sha256


def test_token_estimate() -> None:
    img = encode_image(Image.new("RGB", (512, 512)), max_side=512, quality=90)
    assert estimated_image_tokens(img, "low") == 85
    assert estimated_image_tokens(img, "high") == 85 + 170
