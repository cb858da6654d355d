"""Pool placement: Ray options per pool, and a clear error when a pool cannot be placed."""

from __future__ import annotations

import pytest

from easyr1.config.cluster import PoolPlacement
from easyr1.pools.placement import ray_actor_options, worker_device, worker_threads


def test_ray_options_carry_the_pool_resource() -> None:
    gpu = PoolPlacement(resource="actor", resource_per_worker=1.0, num_gpus_per_worker=1.0, num_cpus_per_worker=8)
    assert ray_actor_options(gpu) == {"num_cpus": 8, "num_gpus": 1.0, "resources": {"actor": 1.0}}
    assert worker_device(gpu) == "cuda" and worker_threads(gpu) == 8
    cpu = PoolPlacement(num_cpus_per_worker=0.5)
    assert ray_actor_options(cpu) == {"num_cpus": 0.5, "num_gpus": 0.0}
    assert worker_device(cpu) == "cpu" and worker_threads(cpu) == 1


@pytest.mark.slow
def test_unplaceable_pool_fails_with_the_reason(ray_session, make_config) -> None:
    from easyr1.actor.pool import ActorPool

    cfg = make_config(num_workers=1)
    cfg.cluster.actor.resource = "actor"  # no node of the local Ray advertises it
    with pytest.raises(RuntimeError, match=r"actor pool: 1 worker\(s\) asking for .*'actor': 1\.0"):
        ActorPool(cfg, startup_timeout_s=2)
