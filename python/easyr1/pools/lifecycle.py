"""One lifecycle for the Ray pools: members started with one set of options, a readiness wait by a deadline,
shutdown, and the seam where restarting a lost member will land.

A pool (``ActorPool``, ``RolloutPool``, ``EditorPool``) subclasses :class:`RayPool`, starts its members with
:meth:`RayPool.start_members`, waits with :meth:`RayPool.wait_ready` and ends them with :meth:`RayPool.kill_members`.

**Restart seam (issue 21).** :meth:`RayPool.restart` is where lost-worker handling lands: it will start a fresh
actor with :attr:`RayPool.options` and the member's own start arguments (kept in :attr:`RayPool.start_args`), wait
for it with a :class:`Deadline` of its own and put it in the dead member's place. Each remote call that must not
hang on a lost member takes its timeout from a :class:`Deadline` (``ray.get(ref, timeout=deadline.remaining())``).
Today no pool restarts a member itself: the editor pool relies on Ray's ``max_restarts``; the actor and rollout
pools fail the step.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

logger = logging.getLogger(__name__)

StartArgs = tuple[tuple[Any, ...], dict[str, Any]]
"""Positional and keyword arguments of one member's constructor."""


class Deadline:
    """A point in time a call (or a group of calls) must finish by; ``None`` seconds means no limit."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self._at = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float | None:
        """Seconds left (never negative), or ``None`` without a limit — the ``timeout`` of ``ray.get``/``ray.wait``."""
        return None if self._at is None else max(0.0, self._at - time.monotonic())

    @property
    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self._at is not None and time.monotonic() >= self._at


class RayPool:
    """Base of the Ray actor pools: start, readiness, shutdown, restart seam.

    Args:
        what: the pool's name in messages (``"actor pool"``).
    """

    def __init__(self, what: str):
        self.what = what
        self.options: dict[str, Any] = {}
        """The Ray actor options every member was started with."""
        self.start_args: list[StartArgs] = []
        """Each member's constructor arguments, by index (what :meth:`restart` will start again)."""

    def start_members(
        self, actor_cls: type, options: dict[str, Any], count: int, args: Callable[[int], StartArgs]
    ) -> list[Any]:
        """Start ``count`` Ray actors of ``actor_cls`` with ``options``; ``args(i)`` gives member ``i``'s
        constructor arguments. Returns the handles (not yet ready: see :meth:`wait_ready`)."""
        import ray

        self.options = dict(options)
        self.start_args = [args(i) for i in range(count)]
        remote = ray.remote(actor_cls).options(**options)
        return [remote.remote(*a, **kw) for a, kw in self.start_args]

    def wait_ready(self, refs: Sequence[Any], deadline: Deadline) -> list[Any]:
        """``ray.get`` of the members' start-up calls by ``deadline``, with one clear error when they cannot be
        placed in time (not enough CPUs/GPUs, no node advertising the pool's resource) or one failed to start."""
        import ray

        try:
            return ray.get(list(refs), timeout=deadline.remaining())
        except ray.exceptions.GetTimeoutError:
            wanted = {k: v for k, v in self.options.items() if k in ("num_cpus", "num_gpus", "resources")}
            seconds = math.inf if deadline.seconds is None else deadline.seconds
            raise RuntimeError(
                f"{self.what}: {len(refs)} worker(s) asking for {wanted} each did not start within {seconds:.0f}s; "
                f"cluster total {ray.cluster_resources()}, free now {ray.available_resources()} — lower the pool "
                "sizes or cluster.<pool>.num_cpus_per_worker, or give Ray more resources (cluster.num_cpus)"
            ) from None
        except ray.exceptions.RayActorError as exc:
            raise RuntimeError(f"{self.what}: a worker failed to start: {exc}") from exc

    def kill_members(self, members: Sequence[Any], *, no_restart: bool = True) -> None:
        """Kill the members' actors; one already gone does not stop the others."""
        import ray

        for member in members:
            try:
                ray.kill(member, no_restart=no_restart)
            except Exception as exc:  # already gone
                logger.debug("%s: killing a member: %s", self.what, exc)

    def restart(self, member: int) -> Any:
        """Replace member ``member`` (an index) by a fresh actor — the seam of issue 21 (see the module
        docstring). No pool implements it yet."""
        raise NotImplementedError(f"{self.what}: restarting member {member} is not implemented (issue 21)")
