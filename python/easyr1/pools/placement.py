"""Ray placement of the pools (actor, rollout, editor) and starting Ray itself.

On the Helm chart each worker group advertises a Ray custom resource (``actor``, ``rollout``, ``editor``); a pool
asks for it per worker (``cluster.<pool>.resource``), so each pool lands on its own node group. Locally the same
code asks only for CPUs. Every pool builds its Ray options with :func:`ray_actor_options` (through
:class:`easyr1.pools.lifecycle.RayPool`).
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
