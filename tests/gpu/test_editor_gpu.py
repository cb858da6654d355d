"""The editor at 1024² with the tiny Qwen-Image-Edit pipeline on the GPU (bf16): every edit succeeds at the target
size, and the throughput in images/s is recorded."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PIL import Image

from easyr1.config.editing import ImageEditConfig
from easyr1.core.types import EditRequest
from easyr1.editing.factory import build_editor

pytestmark = pytest.mark.gpu

AREA = 1024 * 1024


def test_editor_at_1024_squared(gpu_editor_dir, record) -> None:
    cfg = ImageEditConfig(
        backend="qwen_image_edit",
        model_path=str(gpu_editor_dir),
        num_inference_steps=4,
        true_cfg_scale=4.0,
        target_area=AREA,
        batch_size=4,
        dtype="bfloat16",
    )
    editor = build_editor(cfg)
    assert editor.device.startswith("cuda")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)) for _ in range(8)]
    requests = [EditRequest(img, f"Add a red ball {i}", i, f"gpu/{i}") for i, img in enumerate(images)]
    editor.edit(requests[:4])  # warm-up (kernels, allocator)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    results = editor.edit(requests)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    assert [r.ok for r in results] == [True] * len(requests), [r.reason for r in results]
    assert all(r.image.size == (1024, 1024) for r in results)
    record(
        "editor_1024",
        ok=True,
        images=len(results),
        images_per_s=round(len(results) / seconds, 2),
        steps=cfg.num_inference_steps,
        peak_gpu_mib=round(torch.cuda.max_memory_allocated() / 2**20, 1),
    )
