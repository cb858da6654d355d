#!/usr/bin/env bash
# GPU check for a lent machine: one GPU, under 8 minutes, offline (only the tiny models `easyr1 make-tiny` builds).
#
# Runs the `gpu`-marked tests in tests/gpu/:
#   * the vLLM CUDA engine with the tiny policy (two images per prompt, n samples) — skipped when vLLM is absent;
#   * the actor's bf16 FSDP2 update, with and without FSDP CPU offload, idle offload, adamw_bf16 (one rank, NCCL;
#     a 2-process `cpu:gloo,cuda:nccl` world when two GPUs are visible);
#   * weight sync actor → engine after an update (object store on one GPU; the NCCL collective needs two GPUs);
#   * the editor at 1024² with the tiny Qwen-Image-Edit pipeline (images/s).
# and prints ONE JSON line: device, versions, the outcome of every test and the numbers each recorded.
#
# Usage: bash scripts/gpu_check.sh            (PYTHON=/path/to/python to pick the interpreter;
#        GPU_CHECK_ALLOW_CPU=1 runs the plumbing on a machine without a GPU, where every test skips)
# Exit status: pytest's (0 = every test passed or was skipped for a stated reason).
# The JSON line is also written to $OUT/gpu_check.json when $OUT is set (the device runner's output folder).
set -euo pipefail

cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 RAY_AUTH_MODE=disabled WANDB_MODE=offline
export RAY_USAGE_STATS_ENABLED=0 TOKENIZERS_PARALLELISM=false PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"

WORK="$(mktemp -d /tmp/easyr1-gpu-check.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)

"$PY" - <<'EOF'
import os, sys, torch
if not torch.cuda.is_available():
    if os.environ.get("GPU_CHECK_ALLOW_CPU") != "1":
        sys.exit("gpu_check: torch.cuda.is_available() is False on this machine")
    print("gpu_check: no GPU; GPU_CHECK_ALLOW_CPU=1 runs the plumbing (every test skips)", file=sys.stderr)
else:
    print(f"gpu_check: {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}, torch {torch.__version__}", file=sys.stderr)
EOF

"$PY" -m easyr1 make-tiny --out "$WORK/tiny" >&2
export EASYR1_GPU_TINY="$WORK/tiny" EASYR1_GPU_CHECK_OUT="$WORK/results.jsonl"

set +e
timeout 450 "$PY" -m pytest tests/gpu -m gpu -q -rs -p no:cacheprovider --timeout 300 \
  --junitxml="$WORK/junit.xml" >&2
STATUS=$?
set -e

"$PY" - "$WORK" "$STATUS" "$START" <<'EOF'
import importlib.metadata as md, json, os, sys, time
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

work, status, start = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
tests = {}
junit = work / "junit.xml"
if junit.is_file():
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = f"{'failed' if tag != 'skipped' else 'skipped'}: {(node.get('message') or '')[:300]}"
        tests[name] = outcome
checks = {}
results = work / "results.jsonl"
if results.is_file():
    for line in results.read_text().splitlines():
        item = json.loads(line)
        checks[item.pop("check")] = item

def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None

summary = {
    "gpu_check": {0: "passed", 124: "timeout", 5: "nothing collected"}.get(status, "failed")
    if status or any(v == "passed" for v in tests.values())
    else "nothing ran (every test skipped)",
    "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (no GPU)",
    "gpus": torch.cuda.device_count(),
    "versions": {n: version(n) for n in ("torch", "vllm", "transformers", "diffusers", "ray")},
    "wall_s": int(time.time()) - start,
    "tests": tests,
    "checks": checks,
}
line = json.dumps(summary, sort_keys=False)
print(line)
if os.environ.get("OUT"):
    Path(os.environ["OUT"], "gpu_check.json").write_text(line + "\n")
EOF
exit "$STATUS"
