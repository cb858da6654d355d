"""Fixtures of the judge tests: a loopback OpenAI-compatible server and judges pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from PIL import Image, ImageDraw

from easyr1.config import JudgeConfig
from easyr1.reward.judge import JudgeRequest
from easyr1.reward.judge.openai_judge import OpenAIJudge
from easyr1.reward.judge.test_server import JudgeTestServer, ServerBehaviour

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


@pytest.fixture
def server() -> Iterator[JudgeTestServer]:
    with JudgeTestServer(ServerBehaviour()) as srv:
        yield srv


@pytest.fixture
def make_judge(server: JudgeTestServer) -> Iterator[Callable[..., OpenAIJudge]]:
    judges: list[OpenAIJudge] = []

    def make(api_key: str = API_KEY, **overrides: object) -> OpenAIJudge:
        settings: dict[str, object] = {
            "backend": "openai",
            "base_url": server.base_url,
            "model": "judge-test",
            "max_retries": 0,
            "timeout_s": 5.0,
            "mode": "per_dimension",
        }
        settings.update(overrides)
        cfg = JudgeConfig(**settings)  # type: ignore[arg-type]
        errors = list(cfg.validate("judge"))
        assert not errors, errors
        judge = OpenAIJudge(cfg, api_key=api_key)
        judges.append(judge)
        return judge

    yield make
    for judge in judges:
        judge.close()
