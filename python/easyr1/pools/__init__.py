"""What the Ray pools (actor, rollout, editor) share: placement (:mod:`.placement`) and one lifecycle base
(:mod:`.lifecycle`: start with the pool's options, readiness by a deadline, shutdown, restarting a lost member).

Imports only ``easyr1.config`` and ``easyr1.core``, so every pool may use it without a package cycle.
"""

from .lifecycle import Deadline, RayPool, WorkerLost, describe, is_lost
from .placement import init_ray, ray_actor_options, worker_device, worker_threads

__all__ = [
    "Deadline",
    "RayPool",
    "WorkerLost",
    "describe",
    "init_ray",
    "is_lost",
    "ray_actor_options",
    "worker_device",
    "worker_threads",
]
