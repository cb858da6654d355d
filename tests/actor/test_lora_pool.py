"""LoRA under FSDP2 with two ranks (Ray, gloo, CPU): one sharded step equals the one-process step, adapters only."""

from __future__ import annotations

import pytest
import torch

from easyr1.actor.batch import PolicyBatch
from easyr1.rollout.probe import probe_prompts

pytestmark = pytest.mark.slow


def _fixed_batch() -> PolicyBatch:
    g = torch.Generator().manual_seed(0)
    prompts = probe_prompts(2)
    responses = [torch.randint(0, 800, (n,), generator=g).tolist() for n in (5, 9, 7, 3, 6, 8, 4, 7)]
    advantages = torch.tensor([1.0, -1.0, 0.5, -0.5, 1.0, -1.0, 0.5, -0.5])
    return PolicyBatch([prompts[i // 4] for i in range(8)], responses, advantages=advantages)


def _lora_config(make_config, num_workers: int):
    cfg = make_config(num_workers=num_workers)
    cfg.worker.actor.lora.rank = 4
    cfg.worker.actor.lora.alpha = 8.0
    cfg.worker.actor.model.freeze_vision_tower = True
    cfg.algorithm.use_kl_loss, cfg.algorithm.disable_kl = True, False
    return cfg


def test_two_rank_lora_step_equals_one_rank(ray_session, make_config) -> None:
    from easyr1.actor.pool import ActorPool

    pool1 = ActorPool(_lora_config(make_config, 1))
    pool2 = ActorPool(_lora_config(make_config, 2))
    try:
        batch = _fixed_batch()
        prepared = []
        for pool in (pool1, pool2):
            prepared.append(
                batch.with_fields(
                    old_log_probs=pool.compute_log_probs(batch), ref_log_probs=pool.compute_ref_log_probs(batch)
                )
            )
        b1, b2 = prepared
        torch.testing.assert_close(b1.old_log_probs, b2.old_log_probs, rtol=0, atol=1e-6)
        # B starts at zero: before any step the reference (adapters disabled) is the policy itself.
        torch.testing.assert_close(b1.ref_log_probs, b1.old_log_probs, rtol=0, atol=1e-6)
        m1, m2 = pool1.update_policy(b1), pool2.update_policy(b2)
        assert m1["actor/optimizer_steps"] == m2["actor/optimizer_steps"] == 1
        assert m1["actor/grad_norm"] == pytest.approx(m2["actor/grad_norm"], rel=1e-4)
        s1, s2 = pool1.full_state_dict(), pool2.full_state_dict()  # merged plain weights
        assert s1.keys() == s2.keys() and not any(".lora_" in k for k in s1)
        for key in s1:
            torch.testing.assert_close(s2[key], s1[key], rtol=0, atol=5e-5, msg=key)
        after1, after2 = pool1.compute_log_probs(batch), pool2.compute_log_probs(batch)
        torch.testing.assert_close(after1, after2, rtol=0, atol=1e-5)
        assert not torch.equal(after1, b1.old_log_probs), "the update must change the policy"
        torch.testing.assert_close(pool2.compute_ref_log_probs(batch), b2.ref_log_probs, rtol=0, atol=1e-6)
    finally:
        pool1.shutdown()
        pool2.shutdown()
