"""The target-area policy: sizes, and the scoped override of the pipelines' hard-coded 1024² condition."""

from __future__ import annotations

import pytest
from diffusers import QwenImageEditPipeline, QwenImageEditPlusPipeline

from easyr1.editing import resolution
from easyr1.editing.resolution import condition_area, supports_condition_area, target_size


def test_target_size_keeps_aspect_and_multiples():
    assert target_size(64, 64, 64 * 64) == (64, 64)
    assert target_size(1000, 500, 1024 * 1024) == (1440, 736)
    w, h = target_size(300, 200, 256 * 256)
    assert w % 32 == 0 and h % 32 == 0 and abs(w / h - 1.5) < 0.1
    assert target_size(4000, 100, 4096) == (416, 32)
    with pytest.raises(ValueError):
        target_size(0, 10, 4096)


@pytest.mark.parametrize("cls", [QwenImageEditPipeline, QwenImageEditPlusPipeline])
def test_condition_area_swaps_and_restores(cls):
    import sys

    module = sys.modules[cls.__module__]
    original = module.calculate_dimensions
    assert supports_condition_area(cls)
    with condition_area(cls, 64 * 64):
        assert module.calculate_dimensions(1024 * 1024, 1.0)[:2] == (64, 64)
        assert module.calculate_dimensions(384 * 384, 1.0)[:2] == (384, 384)  # other areas untouched
    assert module.calculate_dimensions is original


def test_condition_area_refuses_an_unknown_pipeline():
    class NotAPipeline:
        def __call__(self):
            return None

    assert not supports_condition_area(NotAPipeline)
    with pytest.raises(RuntimeError), condition_area(NotAPipeline, 4096):
        pass
    assert resolution.PIPELINE_DEFAULT_AREA == 1024 * 1024
