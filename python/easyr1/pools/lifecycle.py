"""One lifecycle for the Ray pools: members started with one set of options, a readiness wait by a deadline,
shutdown, and the seam where restarting a lost member will land.

A pool (``ActorPool``, ``RolloutPool``, ``EditorPool``) subclasses :class:`RayPool`, starts its members with
:meth:`RayPool.start_members`, waits with :meth:`RayPool.wait_ready` and ends them with :meth:`RayPool.kill_members`.

**Lost members (issue 21).** A member whose process died (SIGKILL, OOM kill, node loss: Ray raises one of
:data:`LOST`) or that stopped answering by its deadline is replaced by :meth:`RayPool.restart` (or, for a pool that
waits for readiness itself, :meth:`RayPool.replace`): a fresh actor with :attr:`RayPool.options` and the member's own
start arguments (:attr:`RayPool.start_args`), at most :attr:`RayPool.max_restarts` times per member; beyond that, or
when the fresh actor cannot start, :class:`WorkerLost` names the member and the cause. The pool then redoes the
member's work (editor: its requests; rollout: its share of the prompts, same seeds, after loading the latest
weights). Each remote call that must not hang on a lost member takes its timeout from a :class:`Deadline`
(``ray.get(ref, timeout=deadline.remaining())``).

A pool whose members share state that none of them outlives alone — the actor pool's FSDP world, whose parameters
and optimizer state are sharded — is restarted as a whole: :meth:`RayPool.lost_members` finds the dead (or silent)
members after a failed call, :meth:`RayPool.replace_all` kills every member and starts the set again, at most
:attr:`RayPool.max_restarts` times over the pool's life (:attr:`RayPool.pool_restarts`); the caller then restores
their state (the actor: from the newest complete checkpoint, see ``easyr1.trainer.recovery``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

logger = logging.getLogger(__name__)

LOST_NAMES = ("RayActorError", "ActorDiedError", "ActorUnavailableError")
"""Ray's exceptions (``ray.exceptions``, Ray 2.60) for a call whose actor process is gone or unreachable;
``ActorDiedError`` and ``ActorUnavailableError`` are subclasses of ``RayActorError``."""


def is_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the member's process died or cannot be reached (not an exception the member raised)."""
    from ray.exceptions import RayActorError

    return isinstance(exc, RayActorError)


class WorkerLost(RuntimeError):
    """A pool member was lost and could not be brought back: its restart limit was reached, or the fresh actor
    failed to start. The message names the pool, the member and the cause (one line)."""

    def __init__(self, pool: str, member: int, cause: str):
        super().__init__(f"{pool}: member {member} lost ({cause})")
        self.pool = pool
        self.member = member
        self.cause = cause


def describe(exc: BaseException, limit: int = 300) -> str:
    """One line for a Ray error: its class and the first meaningful part of its message."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


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

    def __init__(self, what: str, *, max_restarts: int = 0, restart_config: str = ""):
        self.what = what
        self.options: dict[str, Any] = {}
        """The Ray actor options every member was started with."""
        self.start_args: list[StartArgs] = []
        """Each member's constructor arguments, by index (what :meth:`restart` starts again)."""
        self.actor_cls: type | None = None
        """The members' class (what :meth:`restart` starts again)."""
        self.max_restarts = max_restarts
        """Restarts allowed per member over the pool's life (-1: no limit)."""
        self.restart_config = restart_config
        """The config key of :attr:`max_restarts`, named in :class:`WorkerLost` messages."""
        self.restarts: list[int] = []
        """Restarts so far, per member."""
        self.pool_restarts = 0
        """Restarts of the whole set of members so far (:meth:`replace_all`)."""

    def start_members(
        self, actor_cls: type, options: dict[str, Any], count: int, args: Callable[[int], StartArgs]
    ) -> list[Any]:
        """Start ``count`` Ray actors of ``actor_cls`` with ``options``; ``args(i)`` gives member ``i``'s
        constructor arguments. Returns the handles (not yet ready: see :meth:`wait_ready`)."""
        import ray

        self.options = dict(options)
        self.start_args = [args(i) for i in range(count)]
        self.actor_cls = actor_cls
        self.restarts = [0] * count
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

    def replace(self, member: int, old: Any, cause: str) -> Any:
        """Kill ``old`` (member ``member``'s handle) and start a fresh actor in its place with the same options and
        constructor arguments; returns the new handle, not yet ready. Counts the restart; raises
        :class:`WorkerLost` when the member's restarts are used up (``max_restarts``)."""
        import ray

        if self.actor_cls is None:
            raise RuntimeError(f"{self.what}: replace before start_members")
        used = self.restarts[member]
        if 0 <= self.max_restarts <= used:
            setting = f" ({self.restart_config}={self.max_restarts})" if self.restart_config else ""
            raise WorkerLost(self.what, member, f"{cause}; restart limit reached after {used} restart(s){setting}")
        self.kill_members([old])
        self.restarts[member] = used + 1
        logger.warning("%s: restarting member %d (restart %d): %s", self.what, member, used + 1, cause)
        args, kwargs = self.start_args[member]
        return ray.remote(self.actor_cls).options(**self.options).remote(*args, **kwargs)

    def restart(
        self, member: int, old: Any = None, *, cause: str = "lost", ready: Callable[[Any], Any], deadline: Deadline
    ) -> Any:
        """:meth:`replace`, then wait for the fresh actor: ``ready(handle)`` is its readiness call (a Ray ref),
        waited for by ``deadline``. Returns the ready handle; :class:`WorkerLost` when it cannot start in time."""
        import ray

        handle = self.replace(member, old, cause)
        try:
            ray.get(ready(handle), timeout=deadline.remaining())
        except Exception as exc:  # timeout, or its constructor raised
            self.kill_members([handle])
            raise WorkerLost(
                self.what, member, f"{cause}; the restarted member did not start: {describe(exc)}"
            ) from exc
        return handle

    def lost_members(self, members: Sequence[Any], ping: Callable[[Any], Any], deadline: Deadline) -> dict[int, str]:
        """The members that are gone: ``ping(handle)`` (a Ray ref) failed with one of Ray's lost-actor errors, or
        did not answer by ``deadline`` (a member still blocked in a collective with a dead peer answers late too).
        Returns ``{index: cause}``; empty when every member answered."""
        import ray

        refs = {ping(m): i for i, m in enumerate(members)}
        ready, pending = ray.wait(list(refs), num_returns=len(refs), timeout=deadline.remaining())
        lost: dict[int, str] = {}
        for ref in ready:
            try:
                ray.get(ref)
            except Exception as exc:
                if is_lost(exc):
                    lost[refs[ref]] = describe(exc)
        waited = math.inf if deadline.seconds is None else deadline.seconds
        for ref in pending:
            lost[refs[ref]] = f"no answer to a ping within {waited:g}s"
        return dict(sorted(lost.items()))

    def replace_all(self, members: Sequence[Any], member: int, cause: str) -> list[Any]:
        """Kill every member and start the whole set again with :attr:`options` and :attr:`start_args` (member
        ``member`` was lost: ``cause``); returns the new handles, not yet ready. Counts one restart of the pool;
        raises :class:`WorkerLost` when :attr:`max_restarts` restarts were used (the members are killed either
        way: a set missing a member cannot go on)."""
        import ray

        if self.actor_cls is None:
            raise RuntimeError(f"{self.what}: replace_all before start_members")
        self.kill_members(members)
        used = self.pool_restarts
        if 0 <= self.max_restarts <= used:
            setting = f" ({self.restart_config}={self.max_restarts})" if self.restart_config else ""
            raise WorkerLost(self.what, member, f"{cause}; restart limit reached after {used} restart(s){setting}")
        self.pool_restarts = used + 1
        logger.warning("%s: restarting all %d members (restart %d): %s", self.what, len(members), used + 1, cause)
        remote = ray.remote(self.actor_cls).options(**self.options)
        return [remote.remote(*a, **kw) for a, kw in self.start_args]
