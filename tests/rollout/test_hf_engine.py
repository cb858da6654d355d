"""The hf engine in-process: grouping, seeding, log-probs, weight updates; sampling parameters from config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from easyr1.core.types import SamplingParams
from easyr1.rollout.probe import probe_prompts
from easyr1.rollout.protocol import RolloutEngine
from easyr1.rollout.sampling import sampling_params


@pytest.fixture(scope="module")
def engine(tiny_policy_dir: Path):
    from easyr1.rollout.hf_engine import HFRolloutEngine

    return HFRolloutEngine(str(tiny_policy_dir), generation_batch_size=4, threads=1)


def test_generate_returns_n_samples_grouped_by_prompt(engine) -> None:
    assert isinstance(engine, RolloutEngine)
    prompts = probe_prompts(3)
    outs = engine.generate(prompts, SamplingParams(n=3, max_tokens=10, seed=1))
    assert [(o.prompt_id, o.sample_index) for o in outs] == [(p.id, k) for p in prompts for k in range(3)]
    for o in outs:
        assert 0 < len(o.token_ids) <= 10 and len(o.logprobs) == len(o.token_ids)
        assert o.finish_reason == ("length" if len(o.token_ids) == 10 else "stop")
        assert o.text == engine.tokenizer.decode(o.token_ids, skip_special_tokens=True)
        assert all(lp <= 0 for lp in o.logprobs)


def test_seeds_make_samples_reproducible(engine) -> None:
    prompts = probe_prompts(2)
    a = engine.generate(prompts, SamplingParams(n=3, max_tokens=8, seed=7))
    b = engine.generate(prompts, SamplingParams(n=3, max_tokens=8, seed=7))
    c = engine.generate(prompts, SamplingParams(n=3, max_tokens=8, seed=8))
    assert [o.token_ids for o in a] == [o.token_ids for o in b]
    assert [o.token_ids for o in a] != [o.token_ids for o in c]
    # The n samples of a group differ (sampling at temperature 1), greedy ones do not.
    assert len({tuple(o.token_ids) for o in a[:3]}) > 1
    greedy = engine.generate(prompts[:1], SamplingParams(n=3, temperature=0.0, max_tokens=8))
    assert len({tuple(o.token_ids) for o in greedy}) == 1


def test_generation_log_probs_equal_the_training_forward(engine) -> None:
    prompts = probe_prompts(2)
    outs = engine.generate(prompts, SamplingParams(n=2, max_tokens=12, seed=3))
    forward = engine.log_probs([prompts[i // 2] for i in range(4)], [o.token_ids for o in outs])
    for o, lp in zip(outs, forward, strict=True):
        assert max(abs(a - b) for a, b in zip(o.logprobs, lp, strict=True)) <= 1e-4


def test_update_weights_replaces_the_policy(engine, tiny_policy_dir: Path) -> None:
    prompts = probe_prompts(1)
    tokens = [engine.generate(prompts, SamplingParams(n=1, max_tokens=6, seed=0))[0].token_ids]
    before = engine.log_probs(prompts, tokens)[0]
    original = {k: v.clone() for k, v in engine.model.state_dict().items()}
    perturbed = {k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v for k, v in original.items()}
    engine.update_weights(perturbed)
    after = engine.log_probs(prompts, tokens)[0]
    assert max(abs(a - b) for a, b in zip(before, after, strict=True)) > 1e-3
    with pytest.raises(RuntimeError, match="missing"):
        engine.update_weights({k: v for k, v in original.items() if not k.startswith("lm_head")})
    assert engine.log_probs(prompts, tokens)[0] == after  # a rejected dict changes nothing
    engine.update_weights(original)
    assert engine.log_probs(prompts, tokens)[0] == before


def test_sampling_params_from_config() -> None:
    from easyr1.config import EasyR1Config

    cfg = EasyR1Config()
    cfg.worker.rollout.n, cfg.worker.rollout.temperature, cfg.worker.rollout.response_length = 5, 0.9, 64
    train = sampling_params(cfg, seed=11)
    assert (train.n, train.temperature, train.max_tokens, train.seed) == (5, 0.9, 64, 11)
    val = sampling_params(cfg, validation=True)
    assert (val.n, val.temperature, val.seed) == (1, 0.0, cfg.worker.rollout.seed)
