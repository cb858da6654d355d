"""A fixed multimodal probe: deterministic two-image prompts used to compare engine and actor log-probs after a
weight sync (and by tests). Built from numbers only, no files, so every process builds the same probe."""

from __future__ import annotations

import numpy as np
from PIL import Image

from easyr1.core.types import PolicyPrompt

PROBE_SYSTEM = "You are an expert image editing critic. Answer with <CoT>...</CoT> then <Re_edit>...</Re_edit> blocks."


def probe_image(index: int, size: int = 64) -> Image.Image:
    """A smooth colour pattern that differs per ``index``."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    phase = 0.7 * index
    r = 0.5 + 0.5 * np.sin(6.0 * x + phase)
    g = 0.5 + 0.5 * np.cos(5.0 * y - phase)
    b = 0.5 + 0.5 * np.sin(4.0 * (x + y) + 2 * phase)
    arr = (np.stack([r, g, b], axis=-1) * 255).round().astype(np.uint8)
    return Image.fromarray(arr, mode="RGB")


def probe_prompt(index: int, instruction: str | None = None, size: int = 64) -> PolicyPrompt:
    """A prompt in the production shape: system turn, user turn with the instruction and two images."""
    text = (
        instruction
        or ["Add a red ball on the grass.", "Remove the shadow of the tree.", "Make the sky blue."][index % 3]
    )
    messages = [
        {"role": "system", "content": PROBE_SYSTEM},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": f"<desired_editing_instruction>{text}</desired_editing_instruction>"},
                {"type": "image"},
                {"type": "image"},
            ],
        },
    ]
    return PolicyPrompt(
        id=f"probe-{index}",
        messages=messages,
        images=[probe_image(2 * index, size), probe_image(2 * index + 1, size)],
    )


def probe_prompts(count: int = 2, size: int = 64) -> list[PolicyPrompt]:
    return [probe_prompt(i, size=size) for i in range(count)]
