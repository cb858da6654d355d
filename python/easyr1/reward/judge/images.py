"""Images as the judge receives them: RGB JPEG, long side capped, base64 data URL, content hash for the cache."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
from dataclasses import dataclass
from typing import Any

from PIL import Image


@dataclass(frozen=True)
class EncodedImage:
    """One image ready to send: the ``data:`` URL, the hash of the JPEG bytes and the sent size."""

    data_url: str
    url_json: bytes
    """``data_url`` as a JSON string (quoted, UTF-8), spliced into every request body that sends the image."""
    sha256: str
    width: int
    height: int
    num_bytes: int


def encode_image(image: Image.Image, *, max_side: int, quality: int) -> EncodedImage:
    """Convert to RGB (transparent pixels over white), shrink so the long side is at most ``max_side`` (never
    enlarge), and encode as JPEG."""
    img = image
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        img = background
    elif img.mode != "RGB":
        img = img.convert("RGB")
    width, height = img.size
    long_side = max(width, height)
    if long_side > max_side:
        scale = max_side / long_side
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        img = img.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=quality)
    data = buffer.getvalue()
    data_url = "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
    return EncodedImage(
        data_url=data_url,
        url_json=b'"' + data_url.encode("ascii") + b'"',  # base64 needs no JSON escaping
        sha256=hashlib.sha256(data).hexdigest(),
        width=img.size[0],
        height=img.size[1],
        num_bytes=len(data),
    )


def estimated_image_tokens(image: EncodedImage, detail: str) -> int:
    """Prompt tokens an image costs under OpenAI's published rule (85 base, +170 per 512-px tile for high detail).

    Used only to pace the tokens-per-minute limiter before a call; the real count comes back in ``usage``.
    """
    if detail == "low":
        return 85
    width, height = float(image.width), float(image.height)
    if max(width, height) > 2048:
        scale = 2048 / max(width, height)
        width, height = width * scale, height * scale
    if min(width, height) > 768:
        scale = 768 / min(width, height)
        width, height = width * scale, height * scale
    tiles = math.ceil(width / 512) * math.ceil(height / 512)
    return 85 + 170 * tiles


def request_body(kwargs: dict[str, Any], urls: list[dict[str, Any]], images: list[tuple[str, EncodedImage]]) -> bytes:
    """A chat-completion body as bytes, built once per call and reused by every attempt.

    ``kwargs`` holds, in each ``urls[i]["url"]``, a placeholder unique to the judge (a random 128-bit token) for
    image ``i``: the small JSON skeleton is serialised, then each image's pre-encoded JSON string
    (:attr:`EncodedImage.url_json`) replaces its placeholder, so the base64 text is neither re-escaped nor re-encoded
    per dimension call or retry. ``urls`` get the real data URLs back (``kwargs`` stays inspectable)."""
    body = json.dumps(kwargs, ensure_ascii=False, separators=(",", ":")).encode()
    for (_, image), url in zip(images, urls, strict=True):
        quoted = json.dumps(url["url"]).encode()
        if body.count(quoted) != 1:  # a random token cannot occur in the instruction; checked all the same
            raise RuntimeError("judge request body: an image placeholder is not found exactly once")
        body = body.replace(quoted, image.url_json)
        url["url"] = image.data_url
    return body
