"""The rubrics: five dimensions, each prompt judges one aspect and asks for one number; the JSON schema is strict."""

from __future__ import annotations

import pytest

from easyr1.config import DIMENSIONS as CONFIG_DIMENSIONS
from easyr1.reward.judge import rubrics
from easyr1.reward.judge.protocol import DIMENSIONS


def test_five_dimensions_match_the_config() -> None:
    assert tuple(rubrics.RUBRICS) == DIMENSIONS == tuple(CONFIG_DIMENSIONS)
    assert rubrics.RUBRIC_VERSION


@pytest.mark.parametrize("dimension", DIMENSIONS)
def test_dimension_prompt_names_only_its_own_aspect(dimension: str) -> None:
    text = rubrics.dimension_system_prompt(dimension)
    own = rubrics.RUBRICS[dimension]
    assert own.title in text
    assert len(own.checks) == 5 and all(check in text for check in own.checks)
    for other, rubric in rubrics.RUBRICS.items():
        if other != dimension:
            assert rubric.title not in text
    assert "start from 5" in text and "stays 5" in text  # neutral baseline
    assert "one number from 0 to 10" in text
    assert "Image 1 is the source image" in text and "Image 2 is the edited image" in text
    assert "Image 3" not in text
    assert "Image 3" in rubrics.dimension_system_prompt(dimension, with_preliminary=True)


def test_single_call_prompt_and_strict_schema() -> None:
    text = rubrics.single_call_system_prompt()
    assert all(r.title in text for r in rubrics.RUBRICS.values())
    schema = rubrics.single_call_schema()
    assert schema["required"] == list(DIMENSIONS)
    assert schema["additionalProperties"] is False
    for dimension in DIMENSIONS:
        item = schema["properties"][dimension]
        assert list(item["properties"]) == ["reason", "score"]  # the reason comes before the score
        assert item["required"] == ["reason", "score"] and item["additionalProperties"] is False
    fmt = rubrics.response_format()
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True


def test_image_labels() -> None:
    assert rubrics.image_label(1, "source").startswith("Image 1 (source")
    assert rubrics.image_label(2, "edited").startswith("Image 2 (edited")
    assert rubrics.user_text("add a hat").startswith(rubrics.INSTRUCTION_PREFIX)
