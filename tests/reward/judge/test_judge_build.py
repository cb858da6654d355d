"""``build_judge`` and the API key sources."""

from __future__ import annotations

import importlib.util

import pytest

from easyr1.config import JudgeConfig
from easyr1.reward.judge import Judge, build_judge
from easyr1.reward.judge.credentials import JudgeCredentialError, resolve_api_key
from easyr1.reward.judge.openai_judge import OpenAIJudge


def test_openai_backend_with_key_from_env(monkeypatch) -> None:
    monkeypatch.setenv("EASYR1_TEST_JUDGE_KEY", "sk-env")
    judge = build_judge(JudgeConfig(backend="openai", api_key_env="EASYR1_TEST_JUDGE_KEY"))
    try:
        assert isinstance(judge, OpenAIJudge) and isinstance(judge, Judge)
        assert "sk-env" not in repr(judge)
    finally:
        judge.close()


def test_key_file_takes_precedence(monkeypatch, tmp_path) -> None:
    secret = tmp_path / "key"
    secret.write_text("sk-from-file\n")
    monkeypatch.setenv("EASYR1_TEST_JUDGE_KEY", "sk-env")
    cfg = JudgeConfig(backend="openai", api_key_env="EASYR1_TEST_JUDGE_KEY", api_key_file=str(secret))
    assert resolve_api_key(cfg) == "sk-from-file"


def test_missing_key_names_the_sources_not_a_value(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("EASYR1_TEST_JUDGE_KEY", raising=False)
    with pytest.raises(JudgeCredentialError, match="EASYR1_TEST_JUDGE_KEY"):
        build_judge(JudgeConfig(backend="openai", api_key_env="EASYR1_TEST_JUDGE_KEY"))
    with pytest.raises(JudgeCredentialError, match="cannot be read"):
        resolve_api_key(JudgeConfig(backend="openai", api_key_file=str(tmp_path / "absent")))
    (tmp_path / "empty").write_text("  \n")
    with pytest.raises(JudgeCredentialError, match="empty"):
        resolve_api_key(JudgeConfig(backend="openai", api_key_file=str(tmp_path / "empty")))


@pytest.mark.skipif(importlib.util.find_spec("easyr1.sandbox.judge") is None, reason="sandbox judge not built yet")
def test_sandbox_backend() -> None:
    from easyr1.sandbox.judge import SandboxJudge

    judge = build_judge(JudgeConfig(backend="sandbox"))
    assert isinstance(judge, SandboxJudge) and isinstance(judge, Judge)


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="backend"):
        build_judge(JudgeConfig(backend="nope"))


def test_config_rejects_bad_values() -> None:
    bad = JudgeConfig(backend="openai", mode="three_calls", http_client="curl", max_concurrency=0, base_url="ftp://x")
    keys = {e.key for e in bad.validate("judge")}
    assert {"judge.mode", "judge.http_client", "judge.max_concurrency", "judge.base_url"} <= keys
