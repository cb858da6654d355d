"""What the Ray pools (actor, rollout, editor) share: placement (:mod:`.placement`) and one lifecycle base
(:mod:`.lifecycle`: start with the pool's options, readiness by a deadline, shutdown, the restart seam).

Imports only ``easyr1.config`` and ``easyr1.core``, so every pool may use it without a package cycle.
"""

from .lifecycle import Deadline, RayPool
from .placement import init_ray, ray_actor_options, worker_device, worker_threads

__all__ = ["Deadline", "RayPool", "init_ray", "ray_actor_options", "worker_device", "worker_threads"]
