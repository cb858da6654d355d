"""Helpers shared by the judge tests (a module with a unique name, so it never clashes with other conftests)."""

from __future__ import annotations

from PIL import Image, ImageDraw

from easyr1.reward.judge import JudgeRequest

API_KEY = "sk-test-5f1e9c0d2b7a-do-not-log"


def picture(seed: int, size: tuple[int, int] = (96, 64)) -> Image.Image:
    """A small image that differs per seed."""
    img = Image.new("RGB", size, ((seed * 37) % 256, (seed * 91) % 256, 180))
    draw = ImageDraw.Draw(img)
    draw.ellipse((seed % 20, 5, 30 + seed % 20, 35), fill=(250, 220, 30))
    return img


def make_requests(n: int, prefix: str = "sample", *, shared_source: Image.Image | None = None) -> list[JudgeRequest]:
    return [
        JudgeRequest(
            source_image=shared_source if shared_source is not None else picture(i),
            edited_image=picture(1000 + i),
            instruction=f"{prefix}-{i}: make the lamp brighter",
            key=f"{prefix}-{i}",
        )
        for i in range(n)
    ]
