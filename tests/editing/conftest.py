"""Fixtures of the editing tests: the tiny pipeline (built once per session), a local Ray, small test images."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from easyr1.config.editing import ImageEditConfig


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """The tiny models gain nothing from threads, and on a shared 2-core machine extra threads only contend."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def noise_image(seed: int, width: int = 64, height: int = 64) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


@pytest.fixture
def make_image():
    """``make_image(seed, width=64, height=64)``: a deterministic random-noise RGB image."""
    return noise_image


@pytest.fixture(scope="session")
def tiny_editor_dir(tmp_path_factory) -> Path:
    from easyr1.models.tiny_editor import build_tiny_editor

    return build_tiny_editor(tmp_path_factory.mktemp("tiny") / "editor", seed=0)


@pytest.fixture
def tiny_cfg(tiny_editor_dir) -> ImageEditConfig:
    return ImageEditConfig(
        backend="qwen_image_edit",
        model_path=str(tiny_editor_dir),
        num_inference_steps=2,
        true_cfg_scale=4.0,
        target_area=64 * 64,
        batch_size=4,
    )


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray for one test module (auth off, 2 CPUs, short temp dir), shut down afterwards."""
    import ray

    os.environ["RAY_AUTH_MODE"] = "disabled"
    temp_dir = tempfile.mkdtemp(prefix="r", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
