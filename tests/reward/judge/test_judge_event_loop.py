"""The judge's event loop (``judge.event_loop``): uvloop when asked for and installed, asyncio's loop otherwise (a
missing uvloop is a warning, never an error), the same answers on both; and the requests leave out the SDK's
platform headers."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import sys

import pytest
from judge_testkit import make_requests

from easyr1.config import JudgeConfig
from easyr1.reward.judge.loop import BackgroundLoop, event_loop_factory
from easyr1.reward.judge.transport import SDK_PLATFORM_HEADERS

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None


def test_asyncio_is_the_standard_librarys_loop() -> None:
    assert event_loop_factory("asyncio") is asyncio.new_event_loop


@pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed")
def test_uvloop_when_installed_runs_the_background_loop() -> None:
    import uvloop

    assert event_loop_factory("uvloop") is uvloop.new_event_loop
    background = BackgroundLoop("test-uvloop", loop_factory=event_loop_factory("uvloop"))

    async def loop_type() -> type:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop())

    try:
        assert background.run(loop_type()) is uvloop.Loop
    finally:
        background.close()


def test_missing_uvloop_falls_back_to_asyncio_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError
    with caplog.at_level(logging.WARNING, logger="easyr1.reward.judge.loop"):
        factory = event_loop_factory("uvloop")
    assert factory is asyncio.new_event_loop
    assert any("uvloop not installed" in r.getMessage() for r in caplog.records)
    background = BackgroundLoop("test-fallback", loop_factory=factory)
    try:
        assert background.run(asyncio.sleep(0, result="ran")) == "ran"
    finally:
        background.close()


def test_an_unknown_loop_is_refused() -> None:
    with pytest.raises(ValueError, match="trio"):
        event_loop_factory("trio")
    errors = list(JudgeConfig(event_loop="trio").validate("judge"))
    assert [e.key for e in errors] == ["judge.event_loop"]


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_both_loops_give_the_same_answers(server, make_judge, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if kind == "uvloop" and not HAVE_UVLOOP:
        monkeypatch.setitem(sys.modules, "uvloop", None)  # the fallback path must score the same
    requests = make_requests(3)
    reference = make_judge(mode="single_call", event_loop="asyncio").score_batch(requests)
    results = make_judge(mode="single_call", event_loop=kind).score_batch(requests)
    assert [r.valid for r in results] == [True] * 3
    assert [r.scores for r in results] == [r.scores for r in reference]


def test_requests_leave_out_the_sdks_platform_headers(server, make_judge) -> None:
    judge = make_judge(mode="single_call")
    assert all(r.valid for r in judge.score_batch(make_requests(2)))
    records = server.stats()["records"]
    assert len(records) == 2
    for record in records:
        sent = {name.lower() for name in record["headers"]}
        assert {"authorization", "content-type", "user-agent"} <= sent  # what the calls need is still sent
        assert sent.isdisjoint(name.lower() for name in SDK_PLATFORM_HEADERS)
