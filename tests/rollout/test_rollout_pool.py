"""Rollout pool under Ray: generation split over engines, and weight sync from a 2-rank FSDP actor to 2 engines
(collective broadcast over gloo, and the object-store fallback) checked on the probe."""

from __future__ import annotations

import pytest
import torch
from rollout_testkit import train_once

from easyr1.actor.batch import PolicyBatch
from easyr1.core.types import SamplingParams
from easyr1.rollout.probe import probe_prompts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pools(ray_session, make_config):
    from easyr1.actor.pool import ActorPool
    from easyr1.rollout.pool import RolloutPool

    cfg = make_config(num_workers=2, n=2)
    cfg.worker.rollout.num_engines = 2
    cfg.worker.rollout.weight_sync_bucket_mb = 1  # several buckets even for the tiny model
    cfg.worker.actor.fsdp.enable_rank0_init = True  # rank 1 starts from uninitialised weights, gets rank 0's
    actor = ActorPool(cfg)
    rollout = RolloutPool(cfg)
    yield actor, rollout
    rollout.shutdown()
    actor.shutdown()


def test_generation_is_split_over_engines_and_grouped(pools) -> None:
    actor, rollout = pools
    prompts = probe_prompts(3)
    outs = rollout.generate(prompts, SamplingParams(n=2, max_tokens=8, seed=1))
    assert [(o.prompt_id, o.sample_index) for o in outs] == [(p.id, k) for p in prompts for k in range(2)]
    assert {o.extra["engine"] for o in outs} == {0, 1}
    # Engines and actor start from the same folder (actor rank 1 via rank 0's broadcast): generation log-probs
    # equal the actor's.
    batch = PolicyBatch([prompts[i // 2] for i in range(6)], [o.token_ids for o in outs])
    actor_lp = actor.compute_log_probs(batch)
    for i, o in enumerate(outs):
        assert (torch.tensor(o.logprobs) - actor_lp[i, : len(o.logprobs)]).abs().max() <= 1e-4


def test_collective_sync_after_an_update(pools) -> None:
    actor, rollout = pools
    train_once(actor, rollout)
    stale = rollout.probe_difference(actor)
    assert stale > 1e-3, "engines should be stale after the update"
    rollout.cfg.worker.rollout.sync_probe_tolerance = 1e-4
    metrics = rollout.sync_weights(actor)
    assert metrics["rollout/sync_probe_max_abs_diff"] <= 1e-4
    assert metrics["rollout/sync_bytes"] > 0
    # Second sync reuses the group.
    train_once(actor, rollout)
    assert rollout.sync_weights(actor)["rollout/sync_probe_max_abs_diff"] <= 1e-4


def test_object_store_sync(pools) -> None:
    actor, rollout = pools
    train_once(actor, rollout)
    rollout.cfg.worker.rollout.weight_sync = "object_store"
    try:
        assert rollout.probe_difference(actor) > 1e-3
        assert rollout.sync_weights(actor)["rollout/sync_probe_max_abs_diff"] <= 1e-4
    finally:
        rollout.cfg.worker.rollout.weight_sync = "collective"


def test_a_stale_engine_fails_the_probe_check(pools) -> None:
    actor, rollout = pools
    train_once(actor, rollout)  # engines now hold the previous weights
    rollout.cfg.worker.rollout.sync_probe_tolerance = 1e-4
    with pytest.raises(RuntimeError, match="sync check failed"):
        rollout.verify_sync(actor)
    rollout.sync_weights(actor)  # and a real sync passes the same check


def test_sync_probe_interval_probes_every_nth_sync_and_after_a_replacement(pools) -> None:
    actor, rollout = pools
    cfg = rollout.cfg.worker.rollout
    cfg.sync_probe_interval = 3
    rollout._syncs = 0  # count from a fresh pool's first sync
    try:
        probed = ["rollout/sync_probe_max_abs_diff" in rollout.sync_weights(actor) for _ in range(5)]
        assert probed == [True, False, False, True, False]
        rollout._replaced_since_probe = True  # what replacing a lost engine sets
        assert "rollout/sync_probe_max_abs_diff" in rollout.sync_weights(actor)  # sync 5: off-interval, probed
        assert "rollout/sync_probe_max_abs_diff" in rollout.sync_weights(actor)  # sync 6: on the interval
        assert "rollout/sync_probe_max_abs_diff" not in rollout.sync_weights(actor)  # sync 7
    finally:
        cfg.sync_probe_interval = 1
