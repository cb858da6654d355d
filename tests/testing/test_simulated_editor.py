"""The simulated editor's process-exit faults are opt-in: an instruction alone cannot end a process."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from PIL import Image

from easyr1.core.types import EditRequest
from easyr1.testing.simulated_editor import SimulatedEditor, render


def _request(instruction: str) -> EditRequest:
    return EditRequest(image=Image.new("RGB", (8, 8), (10, 20, 30)), instruction=instruction, seed=3, key="k")


def test_die_is_ordinary_text_without_allow_exit() -> None:
    (result,) = SimulatedEditor().edit([_request("make it red !die")])
    assert result.ok and result.reason is None
    assert result.image.tobytes() == render(_request("make it red !die")).tobytes()


def test_die_exits_the_process_with_allow_exit() -> None:
    code = textwrap.dedent(
        """
        from PIL import Image
        from easyr1.core.types import EditRequest
        from easyr1.testing.simulated_editor import SimulatedEditor
        req = EditRequest(image=Image.new("RGB", (8, 8)), instruction="x !die", seed=1, key="k")
        SimulatedEditor(allow_exit=True).edit([req])
        print("still alive")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "still alive" not in result.stdout


def test_the_product_package_does_not_import_the_test_doubles() -> None:
    code = (
        "import sys, easyr1.cli, easyr1.reward.judge, easyr1.reward.judge.openai_judge, easyr1.editing, "
        "easyr1.trainer.entry; print([m for m in sys.modules if m.startswith('easyr1.testing')])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
