"""Decoding stored images into RGB ``PIL`` images the policy processor accepts.

Every function here either returns a real decoded image or raises :class:`~easyr1.data.errors.FieldError` with
a reason; nothing is ever substituted.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
import struct
import sys
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageOps

from .errors import (
    EXTREME_ASPECT_RATIO,
    MISSING_FILE,
    NOT_AN_IMAGE,
    UNDECODABLE_BASE64,
    WRONG_TYPE,
    ZERO_SIZE_IMAGE,
    FieldError,
)

MAX_ASPECT_RATIO = 200.0
"""Qwen2-VL's processor refuses images whose long side is more than 200 times the short one."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ASCII_WHITESPACE = b" \t\r\n\x0b\x0c"
_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class ImageOptions:
    """How decoded images are fitted: first, with ``max_long_side``, shrunk so neither side exceeds it; then the
    pixel count kept within ``[min_pixels, max_pixels]``. Aspect is preserved throughout."""

    min_pixels: int = 3136
    max_pixels: int = 1003520
    max_long_side: int | None = None


@dataclass
class DecodedImage:
    image: Image.Image
    original_size: tuple[int, int]


def decode_base64(value: Any, column: str) -> bytes:
    """Base64 text, optionally a ``data:<mime>;base64,`` URI, to raw bytes.

    ``value`` may be ``str``, ASCII ``bytes`` or any buffer (parquet readers hand over zero-copy buffers).
    """
    data: str | bytes | memoryview
    if isinstance(value, (str, bytes)):
        data = value
    elif _is_buffer(value):
        data = memoryview(value)
    else:
        raise FieldError(WRONG_TYPE, column, f"expected base64 text, got {type(value).__name__}")
    head = data[:256] if isinstance(data, str) else bytes(data[:256]).decode("ascii", "replace")
    if head[:5].lower() == "data:":
        comma = head.find(",")
        if comma < 0 or ";base64" not in head[:comma].lower():
            raise FieldError(UNDECODABLE_BASE64, column, "data: URI without ';base64,'")
        data = data[comma + 1 :]
    try:
        return _strict_b64decode(data)
    except (binascii.Error, ValueError):
        pass
    # Line-wrapped base64 (MIME style) is still valid base64; anything else is not.
    try:
        raw = data.encode("ascii") if isinstance(data, str) else bytes(data)
    except UnicodeEncodeError as exc:
        raise FieldError(UNDECODABLE_BASE64, column, f"non-ASCII character at offset {exc.start}") from None
    try:
        return _strict_b64decode(raw.translate(None, _ASCII_WHITESPACE))
    except binascii.Error as exc:
        raise FieldError(UNDECODABLE_BASE64, column, str(exc) or "invalid base64") from None


def _is_buffer(value: Any) -> bool:
    try:
        memoryview(value)
    except TypeError:
        return False
    return True


def _strict_b64decode(data: str | bytes | memoryview) -> bytes:
    if sys.version_info >= (3, 11):
        return binascii.a2b_base64(data, strict_mode=True)
    return base64.b64decode(data, validate=True)  # pragma: no cover - Python 3.10


def _png_header_size(data: bytes) -> tuple[int, int] | None:
    if len(data) >= 24 and data.startswith(_PNG_SIGNATURE) and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    return None


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """RGB with transparent areas on white (what transformers' ``convert_rgb`` does for RGBA)."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if not has_alpha:
        return image if image.mode == "RGB" else image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    background.alpha_composite(rgba)
    return background.convert("RGB")


def shrink_long_side(image: Image.Image, max_long_side: int) -> Image.Image:
    """An image whose width or height exceeds ``max_long_side``, shrunk (aspect preserved, Lanczos) to fit a
    ``max_long_side`` square, as PIL's ``thumbnail`` sizes it (1500×1000 → 1024×683 for 1024); any other image is
    returned unchanged (never enlarged). The input image is not modified."""
    if max(image.size) <= max_long_side:
        return image
    shrunk = image.copy()
    shrunk.thumbnail((max_long_side, max_long_side), Image.Resampling.LANCZOS)
    return shrunk


def fit_pixels(image: Image.Image, options: ImageOptions) -> Image.Image:
    """Resize (aspect preserved) so that the long side is at most ``max_long_side`` (when set), then so that
    ``min_pixels <= width*height <= max_pixels``; unchanged when already so."""
    if options.max_long_side is not None:
        image = shrink_long_side(image, options.max_long_side)
    width, height = image.size
    pixels = width * height
    if pixels > options.max_pixels:
        scale = math.sqrt(options.max_pixels / pixels)
        new_w, new_h = max(1, math.floor(width * scale)), max(1, math.floor(height * scale))
    elif pixels < options.min_pixels:
        scale = math.sqrt(options.min_pixels / pixels)
        new_w, new_h = math.ceil(width * scale), math.ceil(height * scale)
    else:
        return image
    return image.resize((new_w, new_h), Image.Resampling.BICUBIC)


def decode_image_bytes(data: bytes, column: str, options: ImageOptions) -> DecodedImage:
    """Raw encoded image bytes → fully decoded RGB image, EXIF orientation applied, fitted to the pixel range."""
    if not data:
        raise FieldError(ZERO_SIZE_IMAGE, column, "empty image data")
    header_size = _png_header_size(data)
    if header_size is not None and 0 in header_size:
        raise FieldError(ZERO_SIZE_IMAGE, column, f"PNG header says {header_size[0]}x{header_size[1]}")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()  # decode every pixel now, so a truncated file is reported here and not in the trainer
    except Image.UnidentifiedImageError:
        raise FieldError(NOT_AN_IMAGE, column, f"{len(data)} bytes in no known image format") from None
    except Image.DecompressionBombError as exc:  # PIL's own limit against decompression bombs
        raise FieldError(NOT_AN_IMAGE, column, f"refused: {exc}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise FieldError(NOT_AN_IMAGE, column, f"cannot decode: {exc}") from None
    width, height = image.size
    if width == 0 or height == 0:
        raise FieldError(ZERO_SIZE_IMAGE, column, f"{width}x{height}")
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise FieldError(EXTREME_ASPECT_RATIO, column, f"{width}x{height} exceeds {MAX_ASPECT_RATIO:.0f}:1")
    if image.getexif().get(_ORIENTATION_TAG, 1) not in (1, None):
        image = ImageOps.exif_transpose(image)
    image = _flatten_alpha(image)
    original = image.size
    return DecodedImage(fit_pixels(image, options), original)


def decode_base64_image(value: Any, column: str, options: ImageOptions) -> DecodedImage:
    return decode_image_bytes(decode_base64(value, column), column, options)


def decode_image_value(value: Any, column: str, options: ImageOptions, base_dir: str) -> DecodedImage:
    """An image field of a JSONL record or HF row.

    Accepted: a path (relative to ``base_dir``), a ``data:...;base64,`` URI, raw encoded bytes, or a Hugging Face
    ``Image`` feature value ``{"bytes": ..., "path": ...}``.
    """
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return decode_image_bytes(bytes(value["bytes"]), column, options)
        if value.get("path"):
            return _decode_path(str(value["path"]), column, options, base_dir)
        raise FieldError(WRONG_TYPE, column, "image feature with neither bytes nor path")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return decode_image_bytes(bytes(value), column, options)
    if isinstance(value, str):
        if value[:5].lower() == "data:":
            return decode_base64_image(value, column, options)
        if not value.strip():
            raise FieldError(MISSING_FILE, column, "empty path")
        return _decode_path(value, column, options, base_dir)
    raise FieldError(WRONG_TYPE, column, f"expected an image path, bytes or image feature, got {type(value).__name__}")


def _decode_path(path: str, column: str, options: ImageOptions, base_dir: str) -> DecodedImage:
    full = path if os.path.isabs(path) else os.path.join(base_dir, path)
    try:
        with open(full, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise FieldError(MISSING_FILE, column, f"no file {full}") from None
    except OSError as exc:
        raise FieldError(MISSING_FILE, column, f"cannot read {full}: {exc}") from None
    return decode_image_bytes(data, column, options)
