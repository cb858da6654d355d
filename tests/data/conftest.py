"""Fixtures for the data tests: small images, seed/JSONL/HF datasets written on the fly, a Qwen2.5-VL processor."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from easyr1.config import DataConfig
from easyr1.data.writers import encode_image_base64, seed_row, write_seed_parquet


def make_image(seed: int, size: tuple[int, int] = (48, 32), mode: str = "RGB") -> Image.Image:
    """A small image whose pixels depend on ``seed`` (so rows are distinguishable after decoding)."""
    rng = np.random.default_rng(seed)
    w, h = size
    channels = {"RGB": 3, "RGBA": 4}[mode]
    array = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    return Image.fromarray(array, mode)


def png_bytes(image: Image.Image, **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **kwargs)
    return buffer.getvalue()


def seed_rows(n: int, start: int = 0, size: tuple[int, int] = (48, 32), **extra: Any) -> list[dict[str, Any]]:
    return [
        seed_row(
            f"row-{i}",
            "add" if i % 2 else "remove",
            make_image(2 * i, size),
            make_image(2 * i + 1, size),
            f"short {i}",
            f"detailed instruction {i}",
            **extra,
        )
        for i in range(start, start + n)
    ]


def write_jsonl(folder: Path, n: int, name: str = "rows.jsonl", start: int = 0) -> Path:
    """``n`` records with images as relative paths under ``folder/images``."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(start, start + n):
        make_image(2 * i).save(folder / "images" / f"{i}_src.png")
        make_image(2 * i + 1).save(folder / "images" / f"{i}_edit.png")
        lines.append(
            json.dumps(
                {
                    "id": f"row-{i}",
                    "instruction": f"instruction {i}",
                    "source_image": f"images/{i}_src.png",
                    "edited_image": f"images/{i}_edit.png",
                    "scene": {"objects": i},
                }
            )
        )
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


def data_config(path: Path | str, **overrides: Any) -> DataConfig:
    cfg = replace(DataConfig(), train_files=str(path), min_pixels=64, max_pixels=1 << 20, decode_threads=2)
    return replace(cfg, **overrides)


@pytest.fixture
def helpers() -> SimpleNamespace:
    return SimpleNamespace(
        make_image=make_image,
        png_bytes=png_bytes,
        seed_rows=seed_rows,
        seed_row=seed_row,
        write_seed_parquet=write_seed_parquet,
        write_jsonl=write_jsonl,
        data_config=data_config,
        encode_image_base64=encode_image_base64,
    )


@pytest.fixture(scope="session")
def qwen_processor():
    """The tiny policy's real ``Qwen2_5_VLProcessor`` (local BPE tokenizer with Qwen special tokens and the Qwen-VL
    chat template; 28*28*4 .. 28*28*16 pixels, i.e. 4..16 image tokens per image)."""
    from easyr1.models.tiny import build_tiny_processor

    return build_tiny_processor()
