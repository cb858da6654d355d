from __future__ import annotations

import pytest

from easyr1.sandbox import CATALOGUE, generate_row


@pytest.fixture(scope="session")
def single_defect_rows():
    """Ten single-defect rows for every defect kind: ``{kind: [SandboxRow, ...]}``."""
    return {name: [generate_row(11, i, defects=[name], max_defects=1) for i in range(10)] for name in CATALOGUE}


@pytest.fixture(scope="session")
def mixed_rows():
    """Rows with 1–3 defects of any kind."""
    return [generate_row(5, i) for i in range(200)]
