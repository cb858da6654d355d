"""Actor settings derived from the config."""

from __future__ import annotations

from easyr1.actor.settings import actor_settings, needs_reference
from easyr1.config import load_config


def test_log_probs_use_the_sampling_temperature():
    # PPO ratios and gradients must be taken under the distribution the responses were sampled from (verl/EasyR1
    # divide the logits by the rollout temperature the same way).
    assert actor_settings(load_config(None, ["worker.rollout.temperature=0.7"])).logprob_temperature == 0.7
    assert actor_settings(load_config(None, ["worker.rollout.temperature=0"])).logprob_temperature == 1.0


def test_reference_only_when_a_kl_term_needs_it():
    assert needs_reference(load_config(None, []))
    assert not needs_reference(load_config(None, ["algorithm.disable_kl=true"]))
    assert not needs_reference(load_config(None, ["algorithm.use_kl_loss=false", "algorithm.kl_coef=0"]))


def test_lora_sync_follows_the_engine_and_validates():
    import pytest

    from easyr1.config.base import ConfigValidationError

    hf = actor_settings(load_config(None, ["worker.actor.lora.rank=8"]))
    assert hf.lora and hf.lora_sync == "adapters"
    vllm = actor_settings(load_config(None, ["worker.actor.lora.rank=8", "worker.rollout.name=vllm"]))
    assert vllm.lora_sync == "merged"
    assert not actor_settings(load_config(None, [])).lora
    served = actor_settings(load_config(None, ["worker.actor.lora.sync=adapters", "worker.rollout.name=vllm"]))
    assert served.lora_sync == "adapters"  # vLLM's own LoRA loading
    with pytest.raises(ValueError, match="needs an engine that serves LoRA adapters"):
        load_config(None, ["worker.actor.lora.rank=8", "worker.actor.lora.sync=adapters"]).worker.actor.lora.sync_mode(
            "sglang"
        )
    for bad in ("worker.actor.lora.rank=-1", "worker.actor.lora.dropout=1.0", "worker.actor.lora.sync=both"):
        with pytest.raises(ConfigValidationError, match=r"worker\.actor\.lora"):
            load_config(None, [bad])
    with pytest.raises(ConfigValidationError, match="target_modules"):
        load_config(None, ["worker.actor.lora.target_modules=[]"])
