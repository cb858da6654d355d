"""``EditorPool``: N editor replicas as Ray actors behind the same :class:`~easyr1.editing.protocol.Editor` protocol.

One ``edit(requests)`` call:

1. identical requests (same image pixels, instruction and seed) are collapsed — each is edited once and its result
   is handed to every duplicate;
2. the unique requests, ordered by image size (so most chunks are one pipeline call), are split into chunks of at
   most ``batch_size`` whose count is a multiple of the live replicas and whose sizes differ by at most one;
3. a work queue hands a chunk to each idle replica and the next chunk to whichever replica finishes first;
4. a replica that dies (process crash, SIGKILL, OOM kill) or times out is replaced by the pool
   (:meth:`~easyr1.pools.RayPool.replace`: a fresh actor with the same options and factory, at most
   ``max_replica_restarts`` times per replica, counted as ``editor/restarts``); its chunk is re-queued as single
   requests, so one poisonous request cannot take the others down with it. A request is tried at most
   ``1 + max_retries`` times, then it fails with the last reason (``replica_died``, ``timeout``, ``exception``). A
   replica past its restart limit, or whose fresh actor cannot start, is retired and the others carry on; when
   the last one is retired, :class:`~easyr1.pools.WorkerLost` names it and the cause;
5. results come back in request order, one per request: no request is dropped or duplicated, and a failure is a
   result with a reason, never a substitute image.

``open_stream()`` runs the same scheduler for requests that arrive over time (:mod:`easyr1.editing.dispatch`): one
future per request, resolved as its replica call returns.

Counters (cumulative :meth:`EditorPool.stats`, per-step :meth:`EditorPool.drain_metrics`) feed the telemetry layer.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from easyr1.core.registries import EDITOR_BACKENDS
from easyr1.core.seeds import request_identity
from easyr1.core.types import EditRequest, EditResult
from easyr1.pools import Deadline, RayPool, WorkerLost, describe, ray_actor_options

from .batching import edit_isolating_failures
from .dispatch import Dispatch, PoolEditStream, SpanCallback, _Call, _Replica
from .protocol import Editor

if TYPE_CHECKING:
    from easyr1.config.cluster import PoolPlacement
    from easyr1.config.editing import ImageEditConfig

logger = logging.getLogger(__name__)

PROBE_INTERVAL_S = 0.25
"""How often a restarting replica is asked whether it is back."""

EditorFactory = Callable[[], Editor]
"""A picklable callable that builds the editor inside a replica (e.g. ``functools.partial(build_editor, cfg)``)."""


class EditorReplica:
    """The body of one replica actor: builds its editor once, then edits batches."""

    def __init__(self, factory: EditorFactory, index: int):
        self.index = index
        self.editor = factory()
        logger.info("editor replica %d ready (pid %d, %s)", index, os.getpid(), type(self.editor).__name__)

    def ready(self) -> dict[str, Any]:
        return {"index": self.index, "pid": os.getpid(), "editor": type(self.editor).__name__}

    def edit(self, requests: Sequence[EditRequest]) -> list[EditResult]:
        return edit_isolating_failures(self.editor.edit, requests)


@dataclass
class PoolCounters:
    """Running totals of an :class:`EditorPool` (all counts are requests unless named otherwise)."""

    requests: int = 0
    unique: int = 0
    ok: int = 0
    failed: Counter = field(default_factory=Counter)
    """Failed requests by reason."""
    dedupe_saved: int = 0
    """Edits not run because an identical request was in the same call."""
    retries: int = 0
    """Unique requests sent again after their replica died or timed out."""
    replica_failures: int = 0
    """Replica calls lost to a crash, a timeout or a transport error."""
    restarts: int = 0
    """Replicas replaced by a fresh actor after their process died or hung."""
    calls: int = 0
    """``edit()`` calls."""
    batches: int = 0
    """Replica calls that returned."""
    latency_s: float = 0.0
    """Wall time spent inside ``edit()``."""
    latency_max_s: float = 0.0
    edited_ok: int = 0
    """Unique requests edited successfully (duplicates not counted)."""
    item_latency_s: float = 0.0
    """Sum of the editor's per-item time over ``edited_ok``."""

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["failed"] = dict(self.failed)
        return out


class EditorPool(RayPool):
    """Ray-actor replicas of an editor, load-balanced, de-duplicating, retrying; itself an ``Editor``.

    Needs a running Ray (``ray.init`` by the driver). ``factory`` runs inside each replica.
    """

    def __init__(
        self,
        factory: EditorFactory,
        *,
        num_replicas: int = 1,
        batch_size: int = 4,
        max_retries: int = 2,
        request_timeout_s: float = 600.0,
        startup_timeout_s: float = 900.0,
        max_replica_restarts: int = 16,
        placement: PoolPlacement | None = None,
        identity_includes_metadata: bool = False,
        name: str = "editor",
    ):
        import ray

        if not ray.is_initialized():
            raise RuntimeError("EditorPool needs a running Ray: call ray.init() (the driver does) first")
        if num_replicas < 1 or batch_size < 1 or max_retries < 0:
            raise ValueError("num_replicas and batch_size must be positive, max_retries non-negative")
        super().__init__(
            f"{name} pool", max_restarts=max_replica_restarts, restart_config="worker.image_edit.max_replica_restarts"
        )
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.request_timeout_s = request_timeout_s
        self.startup_timeout_s = startup_timeout_s
        self.identity_includes_metadata = identity_includes_metadata
        self.name = name
        self.counters = PoolCounters()
        self._reported = PoolCounters()
        self._lock = threading.Lock()
        self._probes: dict[Any, _Call] = {}
        self._restarting: list[_Call] = []
        self._lost: WorkerLost | None = None
        self._reported_busy: dict[int, float] = {}
        options = self.actor_options(placement)
        handles = self.start_members(EditorReplica, options, num_replicas, lambda i: ((factory, i), {}))
        self.replicas = [_Replica(i, handle) for i, handle in enumerate(handles)]
        try:
            infos = self.wait_ready([r.handle.ready.remote() for r in self.replicas], Deadline(startup_timeout_s))
        except RuntimeError:
            self.close()
            raise
        logger.info("%s ready: %s", self.what, infos)

    @classmethod
    def from_config(
        cls,
        cfg: ImageEditConfig,
        placement: PoolPlacement | None = None,
        factory: EditorFactory | None = None,
    ) -> EditorPool:
        """The pool of ``worker.image_edit`` placed by ``cluster.editor``; ``factory`` defaults to the configured
        backend (:func:`easyr1.editing.factory.build_editor`)."""
        from .factory import build_editor

        model_path = Path(cfg.model_path)
        if not model_path.is_absolute() and model_path.exists():
            # replicas are other processes, perhaps started in another working directory
            cfg = dataclasses.replace(cfg, model_path=str(model_path.resolve()))
        return cls(
            factory or functools.partial(build_editor, cfg),
            num_replicas=cfg.num_replicas,
            batch_size=cfg.batch_size,
            max_retries=cfg.max_retries,
            request_timeout_s=cfg.request_timeout_s,
            startup_timeout_s=cfg.startup_timeout_s,
            max_replica_restarts=cfg.max_replica_restarts,
            placement=placement,
            identity_includes_metadata=EDITOR_BACKENDS.facts(cfg.backend).reads_metadata,
        )

    @staticmethod
    def actor_options(placement: PoolPlacement | None, max_replica_restarts: int = 0) -> dict[str, Any]:
        """Ray actor options of a replica: CPUs/GPUs and the pool's custom resource from ``cluster.editor``. Ray
        does not restart a replica (``max_restarts`` 0): the pool does, counted and bounded by
        ``max_replica_restarts`` (accepted here for callers that pass it; it does not reach Ray)."""
        options: dict[str, Any] = {
            "max_restarts": 0,
            "max_task_retries": 0,  # the pool retries, bounded and counted
            "max_concurrency": 1,
        }
        options.update({"num_cpus": 1} if placement is None else ray_actor_options(placement))
        return options

    # -- the Editor protocol -------------------------------------------------------------------------------------

    def edit(self, requests: Sequence[EditRequest]) -> list[EditResult]:
        """Edit a batch on the replicas; one result per request, in order. Raises
        :class:`~easyr1.pools.WorkerLost` when no replica is left (each lost past its restart limit)."""
        with self._lock:
            if self._lost is not None and not self.live_replicas():
                raise self._lost
            started = time.perf_counter()
            first: dict[str, int] = {}
            unique: list[EditRequest] = []
            owner: list[int] = []
            for request in requests:
                identity = request_identity(request, include_metadata=self.identity_includes_metadata)
                if identity not in first:
                    first[identity] = len(unique)
                    unique.append(request)
                owner.append(first[identity])
            unique_results = self._run(unique)
            results: list[EditResult] = []
            handed_out: set[int] = set()
            for u in owner:
                result = unique_results[u]
                if u in handed_out:
                    result = dataclasses.replace(
                        result,
                        image=result.image.copy() if result.image is not None else None,
                        info={**result.info, "duplicate_of": unique[u].key},
                    )
                handed_out.add(u)
                results.append(result)
            self._count(results, len(unique), time.perf_counter() - started, unique_results)
            return results

    # -- scheduling ----------------------------------------------------------------------------------------------

    def live_replicas(self) -> list[_Replica]:
        return [r for r in self.replicas if not r.retired]

    def _run(self, unique: Sequence[EditRequest]) -> list[EditResult]:
        dispatch = Dispatch(self)
        dispatch.add(unique)
        return dispatch.run()

    def open_stream(self, on_span: SpanCallback | None = None) -> PoolEditStream:
        """An edit stream on the replicas (:class:`~easyr1.editing.dispatch.PoolEditStream`): ``submit`` requests
        as they come, get futures resolved as replica calls return; ``close()`` waits and counts it as one ``edit``
        call; ``on_span`` gets each replica call's span as it ends. Holds the pool until closed. Raises
        :class:`~easyr1.pools.WorkerLost` when no replica is left."""
        return PoolEditStream(self, on_span=on_span)

    # -- replica recovery: a fresh actor in the lost one's place; probe until it answers, retire it if it cannot --

    def _recover(self, replica: _Replica, cause: str) -> None:
        """Replace ``replica``'s actor (its process died or hung) and probe the fresh one; retire it past its
        restart limit."""
        try:
            replica.handle = self.replace(replica.index, replica.handle, cause)
        except WorkerLost as exc:
            self._retire(replica, exc)
            return
        self.counters.restarts += 1
        self._probe_later(replica, 0.0)

    def _probe_later(self, replica: _Replica, delay_s: float, deadline: float | None = None) -> None:
        now = time.monotonic()
        deadline = deadline if deadline is not None else now + self.startup_timeout_s
        self._restarting.append(_Call(replica, [], deadline, not_before=now + delay_s))

    def _send_due_probes(self) -> None:
        now = time.monotonic()
        for call in [c for c in self._restarting if now >= c.not_before]:
            self._restarting.remove(call)
            if now >= call.deadline:
                self._retire(call.replica, TimeoutError(f"not back after {self.startup_timeout_s:.0f}s"))
            else:
                self._probes[call.replica.handle.ready.remote()] = call

    def _probe_answered(self, ref: Any) -> bool:
        """True when the probed replica is back; otherwise re-schedules the probe or retires the replica."""
        import ray
        from ray.exceptions import ActorUnavailableError, RayError

        try:
            ray.get(ref)
            return True
        except ActorUnavailableError:  # still restarting
            call = self._probes.pop(ref)
            self._probe_later(call.replica, PROBE_INTERVAL_S, call.deadline)
        except RayError as exc:  # dead for good (restarts used up, or its editor cannot be built any more)
            self._retire(self._probes.pop(ref).replica, exc)
        return False

    def _retire(self, replica: _Replica, exc: BaseException) -> None:
        replica.retired = True
        logger.error("%s replica %d retired (cannot be restarted): %s", self.name, replica.index, exc)
        self.kill_members([replica.handle])
        cause = exc.cause if isinstance(exc, WorkerLost) else f"did not come back: {describe(exc)}"
        self._lost = WorkerLost(self.what, replica.index, f"replica {replica.index}: {cause}; no replica left")

    # -- counters ------------------------------------------------------------------------------------------------

    def _count(self, results: list[EditResult], unique: int, wall_s: float, unique_results: list[EditResult]):
        c = self.counters
        c.calls += 1
        c.requests += len(results)
        c.unique += unique
        c.dedupe_saved += len(results) - unique
        for result in results:
            if result.ok:
                c.ok += 1
            else:
                c.failed[result.reason or "unknown"] += 1
        c.edited_ok += sum(1 for r in unique_results if r.ok)
        c.item_latency_s += sum(r.latency_s for r in unique_results if r.ok)
        c.latency_s += wall_s
        c.latency_max_s = max(c.latency_max_s, wall_s)

    def stats(self) -> dict[str, Any]:
        """Running totals since the pool started, plus the number of live replicas."""
        return {**self.counters.as_dict(), "replicas_alive": len(self.live_replicas())}

    def drain_metrics(self) -> dict[str, float]:
        """Per-step amounts since the previous call, as flat ``editor/*`` metric keys for the driver's logger."""
        now, before = self.counters, self._reported
        edited = now.unique - before.unique
        wall = now.latency_s - before.latency_s
        ok = now.ok - before.ok
        edited_ok = now.edited_ok - before.edited_ok
        metrics: dict[str, float] = {
            "editor/requests": now.requests - before.requests,
            "editor/edits/ok": ok,
            "editor/edits/failed": sum(now.failed.values()) - sum(before.failed.values()),
            "editor/dedupe_saved": now.dedupe_saved - before.dedupe_saved,
            "editor/retries": now.retries - before.retries,
            "editor/replica_failures": now.replica_failures - before.replica_failures,
            "editor/restarts": now.restarts - before.restarts,
            "editor/replicas_alive": len(self.live_replicas()),
            "editor/latency_s": wall,
            "editor/images_per_s": (edited / wall) if wall > 0 else 0.0,
            "editor/item_latency_s": ((now.item_latency_s - before.item_latency_s) / edited_ok if edited_ok else 0.0),
        }
        metrics.update(self._busy_metrics(wall))
        for reason in sorted(set(now.failed) | set(before.failed)):
            metrics[f"editor/edits/failed/{reason}"] = now.failed[reason] - before.failed[reason]
        self._reported = dataclasses.replace(now, failed=Counter(now.failed))
        return metrics

    def _busy_metrics(self, wall_s: float) -> dict[str, float]:
        """Each replica's busy share of the wall time inside ``edit()`` since the previous drain (a replica that idles
        while others work shows up here: too few requests, unbalanced chunks, or a slow restart)."""
        shares: dict[int, float] = {}
        for replica in self.replicas:
            busy = replica.busy_s - self._reported_busy.get(replica.index, 0.0)
            self._reported_busy[replica.index] = replica.busy_s
            if not replica.retired:
                shares[replica.index] = min(1.0, busy / wall_s) if wall_s > 0 else 0.0
        if not shares:
            return {}
        out = {f"editor/replica/{index}/busy_frac": share for index, share in sorted(shares.items())}
        out["editor/replica_busy_frac"] = sum(shares.values()) / len(shares)
        out["editor/replica_busy_frac_min"] = min(shares.values())
        return out

    # -- lifetime ------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Kill the replicas (no restart)."""
        self.kill_members([replica.handle for replica in self.replicas])
        for replica in self.replicas:
            replica.retired = True
        self._probes.clear()
        self._restarting.clear()

    def __enter__(self) -> EditorPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
