"""easyr1.algorithms is pure tensor math: importing it pulls in nothing beyond torch."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
import torch
before = {m.split('.')[0] for m in sys.modules}
import easyr1.algorithms
after = {m.split('.')[0] for m in sys.modules}
print(json.dumps({"new": sorted(after - before), "all": sorted(after)}))
"""


def test_import_adds_nothing_but_easyr1_to_torch():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120)
    modules = json.loads(out.stdout.strip().splitlines()[-1])
    assert modules["new"] == ["easyr1"]
    heavy = {"ray", "transformers", "diffusers", "vllm", "accelerate", "datasets", "openai", "httpx", "wandb", "PIL"}
    assert not heavy & set(modules["all"])
