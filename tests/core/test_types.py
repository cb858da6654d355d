"""The shared value types live in ``easyr1.core.types``; the old homes re-export the very same objects."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

from PIL import Image

from easyr1.core import seeds, types


def test_core_types_import_no_other_easyr1_package_and_no_pil():
    probe = (
        "import sys, json, easyr1.core.types, easyr1.core.seeds; "
        "print(json.dumps(sorted({m for m in sys.modules if m.startswith('easyr1.') or m.split('.')[0] == 'PIL'})))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == ["easyr1.core", "easyr1.core.seeds", "easyr1.core.types"]


def test_package_exports_are_the_neutral_objects_and_the_moved_modules_are_gone():
    import importlib.util

    from easyr1 import data, editing
    from easyr1.editing import protocol as editing_protocol
    from easyr1.rollout import protocol as rollout_protocol

    assert not {"PolicyPrompt", "SamplingParams", "RolloutOutput"} & set(rollout_protocol.__all__)
    assert data.EditSample is types.EditSample
    assert editing.EditRequest is types.EditRequest
    assert not {"EditRequest", "EditResult"} & set(editing_protocol.__all__)
    assert editing.derive_seed is seeds.derive_seed
    assert importlib.util.find_spec("easyr1.data.types") is None
    assert importlib.util.find_spec("easyr1.editing.seeds") is None
    assert importlib.util.find_spec("easyr1.actor.placement") is None


def test_values_pickle_by_their_neutral_path():
    """Ray ships these between driver and pools: the class path must be the neutral module."""
    prompt = types.PolicyPrompt("p0", [{"role": "user", "content": "hi"}], [Image.new("RGB", (4, 4))])
    assert b"easyr1.core.types" in pickle.dumps(prompt)
    back = pickle.loads(pickle.dumps(types.EditResult.failure("timeout", replica=1)))
    assert back == types.EditResult(image=None, ok=False, reason="timeout", info={"replica": 1})
