"""The FSDP2 actor pool under Ray on CPU (gloo): sharded training equals one process, learning, reference,
checkpoints and Hugging Face export."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from easyr1.actor.batch import PolicyBatch, encode_responses
from easyr1.rollout.probe import probe_prompts

pytestmark = pytest.mark.slow

DEMONSTRATIONS = [
    "<CoT>The ball floats above the grass.</CoT>\n<Re_edit>Place the ball on the ground.</Re_edit>",
    "<CoT>The shadow falls on the wrong side of the tree.</CoT>\n<Re_edit>Flip the shadow of the tree to the left.</Re_edit>",
    "<CoT>The sky is dark but the ground is lit.</CoT>\n<Re_edit>Make the sky blue.</Re_edit>",
]
TAGS = re.compile(r"^<CoT>.+</CoT>\n<Re_edit>.+</Re_edit>$", re.DOTALL)


def _fixed_batch(lengths=(5, 9, 7, 3, 6, 8, 4, 7), seed: int = 0) -> PolicyBatch:
    """2 prompts × 4 responses of random tokens, different lengths (so token-mean needs global counts)."""
    g = torch.Generator().manual_seed(seed)
    prompts = probe_prompts(2)
    responses = [torch.randint(0, 800, (n,), generator=g).tolist() for n in lengths]
    advantages = torch.tensor([1.0, -1.0, 0.5, -0.5, 1.0, -1.0, 0.5, -0.5])
    valid = torch.tensor([True, True, True, True, True, True, True, False])  # one masked sample
    return PolicyBatch([prompts[i // 4] for i in range(8)], responses, advantages=advantages, valid=valid)


def _prepare(pool, batch: PolicyBatch) -> PolicyBatch:
    return batch.with_fields(
        old_log_probs=pool.compute_log_probs(batch), ref_log_probs=pool.compute_ref_log_probs(batch)
    )


@pytest.fixture(scope="module")
def pools(ray_session, make_config):
    from easyr1.actor.pool import ActorPool

    # Two ranks packing micro-batches by token budget vs one rank with fixed micro-batches of 2.
    pool2 = ActorPool(make_config(num_workers=2, dynamic_batching=True, max_token_len_per_device=150))
    pool1 = ActorPool(make_config(num_workers=1))
    yield pool1, pool2
    pool1.shutdown()
    pool2.shutdown()


def test_sharded_step_equals_single_process_step(pools) -> None:
    pool1, pool2 = pools
    batch = _fixed_batch()
    b1, b2 = _prepare(pool1, batch), _prepare(pool2, batch)
    torch.testing.assert_close(b1.old_log_probs, b2.old_log_probs, rtol=0, atol=1e-6)
    m1, m2 = pool1.update_policy(b1), pool2.update_policy(b2)
    # 8 responses per mini-batch: 4 micro-batches on one rank vs token-budget micro-batches on two ranks — the
    # same single step.
    assert m1["actor/optimizer_steps"] == m2["actor/optimizer_steps"] == 1
    assert m1["actor/grad_norm"] == pytest.approx(m2["actor/grad_norm"], rel=1e-4)
    assert m1["actor/tokens"] == m2["actor/tokens"] == sum(len(r) for r in batch.responses)
    s1, s2 = pool1.full_state_dict(), pool2.full_state_dict()
    assert s1.keys() == s2.keys()
    # Adam's first step is ~lr·sign(g) (lr = 1e-2): float-order noise moves a few elements by ~1e-5, a wrong
    # gradient (normalisation, a missing rank) by ~lr.
    for key in s1:
        torch.testing.assert_close(s2[key], s1[key], rtol=0, atol=5e-5, msg=key)
    after1, after2 = pool1.compute_log_probs(batch), pool2.compute_log_probs(batch)
    torch.testing.assert_close(after1, after2, rtol=0, atol=1e-5)
    assert not torch.equal(after1, b1.old_log_probs), "the update must change the policy"


def test_two_process_training_lowers_the_loss_and_keeps_the_reference(pools) -> None:
    _, pool = pools
    batch = _prepare(pool, _fixed_batch(seed=1))
    ref_before = batch.ref_log_probs
    losses = [pool.update_policy(batch)["actor/pg_loss"] for _ in range(4)]
    assert losses[-1] < losses[0]
    after = pool.compute_log_probs(batch)
    delta = ((after - batch.old_log_probs) * (batch.old_log_probs != 0)).sum(dim=1)
    adv, valid = batch.advantages, batch.valid
    assert bool((delta[(adv > 0) & valid] > 0).all()) and bool((delta[(adv < 0) & valid] < 0).all())
    # The frozen reference is exactly where it was.
    assert torch.equal(pool.compute_ref_log_probs(batch), ref_before)


def test_checkpoint_round_trip(pools, tmp_path: Path) -> None:
    _, pool = pools
    batch = _prepare(pool, _fixed_batch(seed=2))
    pool.update_policy(batch)
    pool.save_checkpoint(str(tmp_path / "ckpt"))
    saved_logp = pool.compute_log_probs(batch)
    saved_optim = pool.optimizer_state_summary()
    pool.update_policy(batch)  # move away
    assert not torch.equal(pool.compute_log_probs(batch), saved_logp)
    pool.load_checkpoint(str(tmp_path / "ckpt"))
    assert torch.equal(pool.compute_log_probs(batch), saved_logp)
    assert pool.optimizer_state_summary() == saved_optim


def test_export_hf_loads_with_the_production_loader(pools, tmp_path: Path) -> None:
    from easyr1.actor.checkpoint import export_checkpoint
    from easyr1.models.forward import response_log_probs
    from easyr1.models.inputs import collate, encode_prompts
    from easyr1.models.loading import load_policy

    _, pool = pools
    batch = _fixed_batch(seed=3)
    expected = pool.compute_log_probs(batch)
    pool.export_hf(str(tmp_path / "hf"))
    pool.save_checkpoint(str(tmp_path / "ckpt"))
    export_checkpoint(tmp_path / "ckpt", tmp_path / "from_ckpt")
    for folder in ("hf", "from_ckpt"):
        loaded = load_policy(tmp_path / folder)
        enc = encode_prompts(loaded.processor, batch.prompts)
        inputs = collate(enc, batch.responses, pad_token_id=loaded.processor.tokenizer.pad_token_id)
        with torch.no_grad():
            logp, _ = response_log_probs(loaded.model, inputs)
        torch.testing.assert_close(logp * inputs.response_mask, expected, rtol=0, atol=1e-5, msg=folder)


def test_sft_teaches_the_tag_format(pools, tmp_path: Path) -> None:
    """SFT on three demonstrations makes greedy decoding reproduce the tag format (runs last: reuses the
    one-rank pool with a fresh optimizer)."""
    from easyr1.config.actor import OptimConfig
    from easyr1.models.generation import generate_sequences
    from easyr1.models.inputs import encode_prompts
    from easyr1.models.loading import load_policy

    pool, _ = pools
    prompts = probe_prompts(3)

    def greedy_texts(folder: Path) -> list[str]:
        policy = load_policy(folder)
        tok = policy.processor.tokenizer
        encoded = encode_prompts(policy.processor, prompts)
        gens = generate_sequences(policy.model, tok, encoded, max_new_tokens=48, temperature=0.0)
        return [tok.decode(g.token_ids, skip_special_tokens=True) for g in gens]

    start = Path(pool.cfg.worker.actor.model.model_path)
    assert not any(TAGS.match(t) for t in greedy_texts(start))
    batch = PolicyBatch(prompts, encode_responses(load_policy(start).processor.tokenizer, DEMONSTRATIONS))
    pool.configure_optimizer(OptimConfig(lr=1e-2, weight_decay=0.0))
    first = pool.sft_step(batch)
    for _ in range(70):
        last = pool.sft_step(batch)
        if last["sft/loss"] < 0.02:
            break
    assert last["sft/loss"] < first["sft/loss"] / 10
    pool.export_hf(str(tmp_path / "sft"))
    texts = greedy_texts(tmp_path / "sft")
    assert all(TAGS.match(t) for t in texts), texts
    assert texts == DEMONSTRATIONS


def test_response_log_probs_is_the_sync_probe_view_of_compute_log_probs(pools) -> None:
    """What the rollout pool's sync probe calls (prompts + token ids, no ``PolicyBatch`` on its side)."""
    _, pool = pools
    batch = _fixed_batch(seed=5)
    expected = pool.compute_log_probs(batch, temperature=1.0)
    got = pool.response_log_probs(batch.prompts, [tuple(r) for r in batch.responses], temperature=1.0)
    assert got.shape == (8, max(len(r) for r in batch.responses))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
