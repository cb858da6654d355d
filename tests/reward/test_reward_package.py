"""The package's public surface and its promise to stay light."""

from __future__ import annotations

import subprocess
import sys

import easyr1.reward as reward


def test_public_names():
    for name in reward.__all__:
        assert getattr(reward, name) is not None, name
    assert callable(reward.combine) and callable(reward.format_score) and callable(reward.extract_re_edit)


def test_importing_does_not_pull_the_judge_client_or_torch():
    code = (
        "import sys, easyr1.reward as r; r.extract_re_edit('<Re_edit>x</Re_edit>'); r.format_score('');"
        "bad = [m for m in ('openai', 'torch', 'easyr1.reward.judge', 'httpx') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
