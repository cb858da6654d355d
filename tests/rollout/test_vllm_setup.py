"""vLLM engine set-up that needs no vLLM: Ray options from the config, the CPU backend's head-size limit."""

from __future__ import annotations

import pytest


def test_vllm_actor_options_follow_the_config(tmp_path) -> None:
    """GPUs come from cluster.rollout (0 = vLLM's CPU backend), a vLLM environment of its own becomes the actor's
    py_executable."""
    from easyr1.config.rollout import RolloutConfig
    from easyr1.rollout.vllm_engine import vllm_actor_options

    python = tmp_path / "python"
    python.write_text("")
    rollout = RolloutConfig(name="vllm", tensor_parallel_size=2, engine_python=str(python))
    assert vllm_actor_options(rollout, 2) == {"runtime_env": {"py_executable": str(python)}}
    assert vllm_actor_options(rollout, 0) == {"runtime_env": {"py_executable": str(python)}}
    with pytest.raises(ValueError, match="one GPU per TP rank"):
        vllm_actor_options(rollout, 1)
    with pytest.raises(FileNotFoundError, match="setup_vllm_cpu"):
        vllm_actor_options(RolloutConfig(name="vllm", engine_python=str(tmp_path / "absent")), 0)


def test_the_vllm_tiny_spec_fits_the_cpu_backend_and_the_default_does_not() -> None:
    from easyr1.models.tiny import TinyPolicySpec
    from easyr1.rollout.vllm_engine import CPU_ATTENTION_HEAD_SIZES, VLLM_TINY_SPEC

    def head(spec: TinyPolicySpec) -> int:
        return spec.hidden_size // spec.num_attention_heads

    assert head(VLLM_TINY_SPEC) in CPU_ATTENTION_HEAD_SIZES
    assert head(TinyPolicySpec()) not in CPU_ATTENTION_HEAD_SIZES  # why tests and the demo pass their own spec
