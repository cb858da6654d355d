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
