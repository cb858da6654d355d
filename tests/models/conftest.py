from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_policy(tiny_policy_dir: Path):
    from easyr1.models.loading import load_policy

    return load_policy(tiny_policy_dir)
