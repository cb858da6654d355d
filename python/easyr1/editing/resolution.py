"""Output/condition resolution policy of the Qwen-Image-Edit pipelines.

Both diffusers pipelines (0.42) compute the size of the image they condition on with their module-level
``calculate_dimensions(1024 * 1024, aspect)``: the input is resized to ~1024² for the VAE (and, in the Edit
pipeline, for the text encoder's vision input too), whatever ``height``/``width`` the caller asks for. There is no
argument for it. :func:`condition_area` swaps that function, for the duration of one call, for one that puts the
configured target area in place of the hard-coded 1024² — the output size is then passed explicitly, so output and
condition share one resolution. The Plus pipeline's separate 384² vision-encoder condition is left as it is.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

PIPELINE_DEFAULT_AREA = 1024 * 1024
"""The area the pipelines hard-code for their condition image."""

SIDE_MULTIPLE = 32
"""Output sides are multiples of this (what ``calculate_dimensions`` rounds to; a multiple of the VAE×patch
factor of every Qwen-Image checkpoint)."""

_PATCH_LOCK = threading.RLock()


def target_size(width: int, height: int, target_area: int, multiple: int = SIDE_MULTIPLE) -> tuple[int, int]:
    """``(width, height)`` of area ≈ ``target_area`` with the aspect of ``width × height``, sides rounded to
    ``multiple`` (at least one ``multiple``)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    ratio = width / height
    w = math.sqrt(target_area * ratio)
    h = w / ratio
    return max(multiple, round(w / multiple) * multiple), max(multiple, round(h / multiple) * multiple)


def _call_globals(pipeline_cls: type) -> dict[str, Any]:
    """The globals ``__call__`` of the diffusers class that ``pipeline_cls`` is (or derives from) looks names up in."""
    for cls in pipeline_cls.__mro__:
        if cls.__module__.startswith("diffusers.") and "__call__" in vars(cls):
            return vars(sys.modules[cls.__module__])
    return {}


def supports_condition_area(pipeline_cls: type) -> bool:
    """Whether ``pipeline_cls.__call__`` sizes its condition image through a module ``calculate_dimensions``."""
    return callable(_call_globals(pipeline_cls).get("calculate_dimensions"))


@contextmanager
def condition_area(pipeline_cls: type, area: int) -> Iterator[None]:
    """Within the block, calls of ``pipeline_cls`` condition at ``area`` pixels instead of ~1024².

    Raises ``RuntimeError`` when the installed diffusers sizes the condition some other way (a version this code
    does not know), rather than silently running at 1024².
    """
    module_globals = _call_globals(pipeline_cls)
    original: Callable[..., Any] | None = module_globals.get("calculate_dimensions")
    if not callable(original):
        raise RuntimeError(
            f"{pipeline_cls.__name__} in this diffusers version has no module-level calculate_dimensions; "
            "the target-area resolution policy cannot be applied"
        )
    if area == PIPELINE_DEFAULT_AREA:
        yield
        return

    def sized(requested_area: float, ratio: float):
        if requested_area != PIPELINE_DEFAULT_AREA:
            return original(requested_area, ratio)
        width, height, *rest = original(area, ratio)
        return (max(SIDE_MULTIPLE, width), max(SIDE_MULTIPLE, height), *rest)

    with _PATCH_LOCK:
        module_globals["calculate_dimensions"] = sized
        try:
            yield
        finally:
            module_globals["calculate_dimensions"] = original
