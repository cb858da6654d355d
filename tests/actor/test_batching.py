"""Batch sharding, micro-batch partitioning, the lr schedule and metric reduction (no Ray, no model)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from easyr1.actor.batch import (
    PolicyBatch,
    balanced_partition,
    encode_responses,
    fixed_micro_batches,
    shard_batch,
    token_budget_partition,
)
from easyr1.actor.metrics import MetricSums
from easyr1.actor.optim import build_scheduler, lr_factor, warmup_steps
from easyr1.config.actor import OptimConfig
from easyr1.rollout.probe import probe_prompts


def _batch(lengths: list[int]) -> PolicyBatch:
    prompts = probe_prompts(2)
    t = max(lengths)
    return PolicyBatch(
        prompts=[prompts[i % 2] for i in range(len(lengths))],
        responses=[list(range(1, n + 1)) for n in lengths],
        advantages=torch.arange(len(lengths), dtype=torch.float32),
        old_log_probs=torch.randn(len(lengths), t),
    )


def test_shard_equal_sizes_pad_with_invalid_copies() -> None:
    batch = _batch([3, 4, 5, 6, 7])
    shards, real = shard_batch(batch, 2)
    assert [len(s) for s in shards] == [3, 3] and real == [3, 2]
    assert shards[1].valid_mask().tolist() == [True, True, False]
    assert shards[1].responses[2] == batch.responses[4]
    assert shards[0].advantages.tolist() == [0.0, 1.0, 2.0]
    even, real = shard_batch(_batch([3, 4, 5, 6]), 2)
    assert real == [2, 2] and all(s.valid is None for s in even)


def test_batch_validation_names_the_problem() -> None:
    prompts = probe_prompts(1)
    with pytest.raises(ValueError, match="responses"):
        PolicyBatch(prompts, [])
    with pytest.raises(ValueError, match="empty"):
        PolicyBatch(prompts, [[]])
    with pytest.raises(ValueError, match="width"):
        PolicyBatch(prompts, [[1, 2, 3]], old_log_probs=torch.zeros(1, 2))


def test_micro_batch_partitions() -> None:
    assert fixed_micro_batches(5, 2) == [[0, 1], [2, 3], [4]]
    lengths = [10, 90, 40, 60, 50, 5]
    packed = token_budget_partition(lengths, 100)
    assert len(packed) == 3  # first-fit decreasing: 90+10, 60+40, 50+5
    for num_parts in (3, 4, 6):
        parts = token_budget_partition(lengths, 100, num_parts=num_parts)
        assert len(parts) == num_parts and all(parts)
        assert sorted(i for p in parts for i in p) == list(range(6))
        assert max(sum(lengths[i] for i in p) for p in parts) <= 100
    assert token_budget_partition([150, 20], 100) == [[0], [1]]  # an over-long item travels alone
    with pytest.raises(ValueError):
        token_budget_partition(lengths, 100, num_parts=2)
    balanced = balanced_partition([5, 5, 5, 5], 2)
    assert sorted(len(p) for p in balanced) == [2, 2]
    with pytest.raises(ValueError):
        balanced_partition([1, 2], 3)


def test_lr_schedule_warmup_then_cosine() -> None:
    optim = OptimConfig(lr=1.0, lr_warmup_steps=2, lr_scheduler_type="cosine", min_lr_ratio=0.1)
    factors = [lr_factor(s, warmup=2, total=10, kind="cosine", min_ratio=0.1) for s in range(11)]
    assert factors[:2] == [0.5, 1.0]
    assert factors[2] == pytest.approx(1.0) and factors[10] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(factors[1:]))
    assert factors[6] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=optim.lr)
    sched = build_scheduler(opt, optim, total_steps=10)
    seen = []
    for _ in range(4):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx(factors[:4])
    assert warmup_steps(OptimConfig(lr_warmup_ratio=0.1), 50) == 5
    with pytest.raises(ValueError, match="total"):
        build_scheduler(opt, OptimConfig(lr_scheduler_type="cosine"), None)


def test_metric_sums_single_process() -> None:
    sums = MetricSums()
    sums.add_mean("a", 1.0, 1)
    sums.add_mean("a", 4.0, 3)
    sums.add_sum("b", 2.0)
    sums.add_sum("b", 3.0)
    sums.add_max("c", 1.0)
    sums.add_max("c", 7.0)
    assert sums.reduce() == {"a": pytest.approx(3.25), "b": 5.0, "c": 7.0}


def test_encode_responses_appends_the_stop_token(tiny_policy_dir) -> None:
    from easyr1.models.loading import load_processor

    tok = load_processor(tiny_policy_dir).tokenizer
    ids = encode_responses(tok, ["<CoT>a</CoT>", "<Re_edit>b</Re_edit>"])
    stop = tok.convert_tokens_to_ids("<|im_end|>")
    assert all(r[-1] == stop for r in ids)
    assert tok.decode(ids[0][:-1]) == "<CoT>a</CoT>"
