"""Ray placement of the pools (actor, rollout, editor) and starting Ray itself.

On the Helm chart each worker group advertises a Ray custom resource (``actor``, ``rollout``, ``editor``); a pool
asks for it per worker (``cluster.<pool>.resource``), so each pool lands on its own node group. Locally the same
code asks only for CPUs. The editor pool uses :func:`ray_actor_options` too.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from easyr1.config.cluster import ClusterConfig, PoolPlacement

logger = logging.getLogger(__name__)


def ray_actor_options(placement: PoolPlacement, *, name: str | None = None) -> dict[str, Any]:
    """Keyword arguments for ``SomeActor.options(**…)``: CPUs, GPUs and the pool's custom resource."""
    options: dict[str, Any] = {
        "num_cpus": placement.num_cpus_per_worker,
        "num_gpus": placement.num_gpus_per_worker,
    }
    if placement.resource:
        options["resources"] = {placement.resource: placement.resource_per_worker}
    if name:
        options["name"] = name
    return options


def worker_device(placement: PoolPlacement) -> str:
    """``cuda`` when the pool asks for GPUs (Ray then sets ``CUDA_VISIBLE_DEVICES``), else ``cpu``."""
    return "cuda" if placement.num_gpus_per_worker > 0 else "cpu"


def worker_threads(placement: PoolPlacement) -> int:
    """Torch intra-op threads for a worker: its CPU share, at least 1."""
    return max(1, int(placement.num_cpus_per_worker))


def wait_for_pool(refs: list[Any], *, what: str, options: dict[str, Any], count: int, timeout_s: float) -> list[Any]:
    """``ray.get`` of a pool's start-up calls, with a clear error when the workers cannot be placed in time
    (not enough CPUs/GPUs or no node advertising the pool's custom resource)."""
    import ray

    try:
        return ray.get(refs, timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        wanted = {k: v for k, v in options.items() if k in ("num_cpus", "num_gpus", "resources")}
        raise RuntimeError(
            f"{what}: {count} worker(s) asking for {wanted} each did not start within {timeout_s:.0f}s; "
            f"cluster total {ray.cluster_resources()}, free now {ray.available_resources()} — lower the pool sizes "
            "or cluster.<pool>.num_cpus_per_worker, or give Ray more resources (cluster.num_cpus)"
        ) from None


def init_ray(cluster: ClusterConfig, *, temp_dir: str | None = None, **kwargs: Any) -> bool:
    """Connect to the configured Ray cluster, or start a local one. Returns ``True`` if this call started Ray.

    ``cluster.address`` (or ``RAY_ADDRESS``) connects to an existing cluster (a KubeRay job); otherwise Ray starts
    here with ``cluster.num_cpus`` CPUs, no dashboard, and — when ``cluster.disable_auth`` — token authentication
    off (``RAY_AUTH_MODE=disabled``; Ray 2.60 enables it by default). Already initialised → no-op.
    """
    import ray

    if ray.is_initialized():
        return False
    address = cluster.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **kwargs)
        logger.info("connected to Ray at %s", address)
        return True
    if cluster.disable_auth:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    init_kwargs: dict[str, Any] = {"include_dashboard": False, "num_cpus": cluster.num_cpus}
    if temp_dir:
        init_kwargs["_temp_dir"] = temp_dir
    init_kwargs.update(kwargs)
    ray.init(**init_kwargs)
    logger.info("started a local Ray (num_cpus=%s)", cluster.num_cpus)
    return True
