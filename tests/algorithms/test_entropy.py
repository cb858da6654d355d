"""Chunked entropy and token log-probabilities from logits."""

from __future__ import annotations

import math

import pytest
import torch

from easyr1.algorithms import entropy_from_logits, logprobs_from_logits

from . import reference as ref


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("chunk_size", [1, 4, 1024])
def test_entropy_matches_reference(dtype, chunk_size):
    g = torch.Generator().manual_seed(chunk_size)
    logits = (torch.randn(3, 5, 11, generator=g, dtype=torch.float64) * 4).to(dtype)
    got = entropy_from_logits(logits, chunk_size=chunk_size)
    assert got.shape == (3, 5)
    assert got.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    want = [[ref.entropy(row) for row in seq] for seq in ref.to_lists(logits)]
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(got.double(), torch.tensor(want, dtype=torch.float64), rtol=tol, atol=tol)


def test_entropy_bounds_and_extremes():
    uniform = torch.zeros(2, 8)
    torch.testing.assert_close(entropy_from_logits(uniform), torch.full((2,), math.log(8)))
    peaked = torch.tensor([[1e4, 0.0, -1e4]])
    assert entropy_from_logits(peaked).item() == pytest.approx(0.0, abs=1e-6)
    masked_vocab = torch.tensor([[0.0, 0.0, float("-inf"), float("-inf")]], requires_grad=True)
    h = entropy_from_logits(masked_vocab)
    h.sum().backward()
    assert h.item() == pytest.approx(math.log(2))
    assert torch.isfinite(masked_vocab.grad).all()


def test_chunked_gradient_equals_unchunked():
    g = torch.Generator().manual_seed(1)
    base = torch.randn(2, 9, 13, generator=g, dtype=torch.float64)
    weights = torch.randn(2, 9, generator=g, dtype=torch.float64)
    grads = []
    for chunk in (2, 5, 10_000):
        logits = base.clone().requires_grad_(True)
        (entropy_from_logits(logits, chunk_size=chunk) * weights).sum().backward()
        grads.append(logits.grad)
    naive = base.clone().requires_grad_(True)
    logp = naive.log_softmax(-1)
    (-(logp.exp() * logp).sum(-1) * weights).sum().backward()
    for grad in grads:
        torch.testing.assert_close(grad, naive.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("chunk_size", [1, 3, 1024])
def test_logprobs_from_logits(chunk_size):
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(4, 6, 17, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 17, (4, 6), generator=g)
    got = logprobs_from_logits(logits, labels, chunk_size=chunk_size)
    for i in range(4):
        for t in range(6):
            row = logits[i, t].tolist()
            top = max(row)
            logz = top + math.log(math.fsum(math.exp(v - top) for v in row))
            assert got[i, t].item() == pytest.approx(row[labels[i, t]] - logz, rel=1e-12, abs=1e-12)
    got.sum().backward()
    assert torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match="do not match"):
        logprobs_from_logits(logits, labels[:, :3])


def test_empty_inputs_stay_on_the_graph():
    logits = torch.zeros(2, 0, 5, requires_grad=True)
    h = entropy_from_logits(logits)
    lp = logprobs_from_logits(logits, torch.zeros(2, 0, dtype=torch.long))
    assert h.shape == (2, 0) and lp.shape == (2, 0)
    (h.sum() + lp.sum()).backward()
    assert logits.grad.shape == logits.shape
    with pytest.raises(ValueError, match="chunk_size"):
        entropy_from_logits(torch.zeros(1, 3), chunk_size=0)
