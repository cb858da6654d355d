"""Loss aggregation modes, and gradient accumulation + data parallelism equal to one big batch."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from easyr1.algorithms import (
    LOSS_AGG_MODES,
    agg_loss,
    agg_normaliser,
    entropy_from_logits,
    get_policy_loss,
    kl_penalty,
    logprobs_from_logits,
    policy_agg_mode,
)

from . import reference as ref

FAST = settings(max_examples=50, deadline=None)


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
@pytest.mark.parametrize(("B", "T", "seed"), [(1, 1, 0), (2, 5, 1), (7, 3, 2), (16, 12, 3)])
def test_agg_loss_matches_reference(mode, B, T, seed):
    g = torch.Generator().manual_seed(seed)
    loss = torch.randn(B, T, generator=g, dtype=torch.float64)
    mask = torch.rand(B, T, generator=g) > 0.4
    got = agg_loss(loss, mask, mode)
    assert got.item() == pytest.approx(ref.aggregate(loss.tolist(), mask.tolist(), mode), rel=1e-12, abs=1e-12)
    got_norm = agg_loss(loss, mask, mode, norm_length=100)
    want_norm = ref.aggregate(loss.tolist(), mask.tolist(), mode, norm_length=100)
    assert got_norm.item() == pytest.approx(want_norm, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_empty_mask_is_zero_with_zero_gradient(mode):
    loss = torch.full((3, 4), float("nan"), requires_grad=True)
    out = agg_loss(loss, torch.zeros(3, 4, dtype=torch.bool), mode, global_normaliser=0, dp_size=4)
    out.backward()
    assert out.item() == 0.0
    assert torch.equal(loss.grad, torch.zeros(3, 4))


def test_agg_normaliser_counts():
    mask = torch.tensor([[1, 1, 0], [0, 0, 0], [1, 0, 0]])
    assert agg_normaliser(mask, "token-mean").item() == 3
    assert agg_normaliser(mask, "seq-mean-token-sum").item() == 2
    assert agg_normaliser(mask, "seq-mean-token-mean").item() == 2
    assert agg_normaliser(mask, "seq-mean-token-sum-norm").item() == 1
    with pytest.raises(ValueError, match="unknown loss_agg_mode"):
        agg_normaliser(mask, "sum")


# ----------------------------------------------------------------------------- accumulation == big batch


class TinyPolicy(torch.nn.Module):
    """logits = features @ W: enough to give every token a gradient path to shared parameters."""

    def __init__(self, hidden: int, vocab: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = torch.nn.Parameter(torch.randn(hidden, vocab, generator=g, dtype=torch.float64))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features @ self.weight


def make_batch(seed: int, B: int, T: int, hidden: int, vocab: int):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, T + 1, (B,), generator=g)
    lengths[0] = T  # the big batch is as wide as its longest response
    return {
        "features": torch.randn(B, T, hidden, generator=g, dtype=torch.float64),
        "labels": torch.randint(0, vocab, (B, T), generator=g),
        "old_logprob": -torch.rand(B, T, generator=g, dtype=torch.float64) * 2 - 1,
        "ref_logprob": -torch.rand(B, T, generator=g, dtype=torch.float64) * 2 - 1,
        "advantages": torch.randn(B, generator=g, dtype=torch.float64),
        "mask": torch.arange(T)[None, :] < lengths[:, None],
    }


def slice_batch(batch, rows):
    part = {k: v[rows] for k, v in batch.items()}
    width = int(part["mask"].sum(dim=-1).max()) if len(rows) else 0
    # Each micro-batch is trimmed to its own longest response, as a real padded collate would do.
    return {k: (v[:, :width] if v.dim() >= 2 else v) for k, v in part.items()}


def actor_loss(model, mb, *, loss_type, mode, pg_norm, kl_norm, dp_size, norm_length):
    logits = model(mb["features"])
    logprob = logprobs_from_logits(logits, mb["labels"], chunk_size=3)
    scale = {"dp_size": dp_size, "norm_length": norm_length}
    loss, _ = get_policy_loss(loss_type)(
        mb["old_logprob"], logprob, mb["advantages"], mb["mask"], clip_ratio_low=0.2, clip_ratio_high=0.28,
        clip_ratio_dual=3.0, loss_agg_mode=mode, global_normaliser=pg_norm, **scale,
    )  # fmt: skip
    kl = kl_penalty(logprob, mb["ref_logprob"], "low_var_kl")
    loss = loss + 0.1 * agg_loss(kl, mb["mask"], mode, global_normaliser=kl_norm, **scale)
    entropy = entropy_from_logits(logits, chunk_size=5)
    return loss - 0.01 * agg_loss(entropy, mb["mask"], mode, global_normaliser=kl_norm, **scale)


def accumulated_gradient(batch, model, *, ranks, micro, loss_type, mode, seed, norm_length):
    """Split rows over ``ranks`` × ``micro`` micro-batches (sizes uneven, some possibly empty); backward each
    micro-batch loss as is; average over ranks like FSDP/DDP do."""
    B = batch["mask"].shape[0]
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(B, generator=g)
    cuts = sorted(torch.randint(0, B + 1, (ranks * micro - 1,), generator=g).tolist())
    bounds = [0, *cuts, B]
    parts = [order[bounds[k] : bounds[k + 1]] for k in range(ranks * micro)]
    micro_batches = [slice_batch(batch, rows) for rows in parts]

    pg_mode = policy_agg_mode(loss_type, mode)
    pg_norm = sum(agg_normaliser(mb["mask"], pg_mode) for mb in micro_batches)  # = all_reduce(SUM) of local sums
    kl_norm = sum(agg_normaliser(mb["mask"], mode) for mb in micro_batches)
    model.zero_grad()
    for mb in micro_batches:
        if mb["mask"].shape[0] == 0:
            continue
        loss = actor_loss(
            model, mb, loss_type=loss_type, mode=mode, pg_norm=pg_norm, kl_norm=kl_norm, dp_size=ranks,
            norm_length=norm_length,
        )  # fmt: skip
        loss.backward()
    return model.weight.grad.clone() / ranks  # every rank holds its own sum; the all-reduce averages them


def big_batch_gradient(batch, model, *, loss_type, mode, norm_length):
    model.zero_grad()
    loss = actor_loss(
        model, batch, loss_type=loss_type, mode=mode, pg_norm=None, kl_norm=None, dp_size=1, norm_length=norm_length
    )
    loss.backward()
    return model.weight.grad.clone()


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    B=st.integers(1, 10),
    T=st.integers(1, 7),
    ranks=st.integers(1, 4),
    micro=st.integers(1, 3),
    mode=st.sampled_from(LOSS_AGG_MODES),
    loss_type=st.sampled_from(["ppo", "gspo"]),
)
def test_micro_batches_over_ranks_equal_one_big_batch(seed, B, T, ranks, micro, mode, loss_type):
    batch = make_batch(seed, B, T, hidden=4, vocab=6)
    model = TinyPolicy(4, 6, seed)
    want = big_batch_gradient(batch, model, loss_type=loss_type, mode=mode, norm_length=T)
    got = accumulated_gradient(
        batch, model, ranks=ranks, micro=micro, loss_type=loss_type, mode=mode, seed=seed, norm_length=T
    )
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_naive_per_micro_batch_mean_is_not_the_big_batch_gradient():
    # Guard that the equivalence test above can fail: averaging local token-means differs from the global mean.
    batch = make_batch(3, 8, 6, hidden=4, vocab=6)
    batch["mask"][:4, 1:] = False  # micro-batches with very different token counts
    model = TinyPolicy(4, 6, 3)
    want = big_batch_gradient(batch, model, loss_type="ppo", mode="token-mean", norm_length=6)
    model.zero_grad()
    for rows in (torch.arange(0, 4), torch.arange(4, 8)):
        mb = slice_batch(batch, rows)
        loss = actor_loss(
            model, mb, loss_type="ppo", mode="token-mean", pg_norm=None, kl_norm=None, dp_size=1, norm_length=6
        )
        (loss / 2).backward()
    assert not torch.allclose(model.weight.grad, want)
