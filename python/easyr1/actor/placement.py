"""Moved to :mod:`easyr1.pools.placement`; kept for importers outside the issue-17 refactor (``actor/worker.py``,
``trainer/preflight.py``, ``tests/data/test_data_prompt_wiring.py``) until they import it there."""

from easyr1.pools.placement import init_ray, ray_actor_options, worker_device, worker_threads

__all__ = ["init_ray", "ray_actor_options", "worker_device", "worker_threads"]
