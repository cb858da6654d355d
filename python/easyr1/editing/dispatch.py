"""The editor pool's scheduler, and the streaming form of the pool's ``edit``.

:class:`Dispatch` is the work queue of :class:`~easyr1.editing.pool.EditorPool`: requests are added in batches (each
batch ordered by image size and split by :func:`~easyr1.editing.batching.balanced_chunks`), chunks go to idle
replicas, lost or late replica calls are re-queued one request at a time, and every request ends with exactly one
result. ``EditorPool.edit`` adds one batch and pumps until it is done, on the caller's thread.

:class:`PoolEditStream` (``EditorPool.open_stream()``) feeds the same scheduler from a dispatcher thread: ``submit``
hands back one :class:`concurrent.futures.Future` per request at once, and each future is resolved as soon as its
replica call returns. Identical requests across all ``submit`` calls of one stream are edited once (the later ones get
a copy naming the first *submitted* one in ``info["duplicate_of"]``); the pool's counters see one ``edit`` call per
stream, counted when it closes. :class:`InProcessEditStream` gives an editor that only has ``edit`` the same
interface (one ``edit`` per ``submit``, on one worker thread).

Both streams keep their spans (``spans``: one per replica call or ``edit`` call) and, given ``on_span``, also report
each one as soon as it ends, from the thread that ended it (the dispatcher, or the edit worker): a caller that keeps
a timeline (``trainer/pipeline.py``) sees an edit call when it happened, not when the stream closes.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from easyr1.core.seeds import request_identity
from easyr1.core.types import EditRequest, EditResult
from easyr1.pools import describe

from .batching import balanced_chunks

if TYPE_CHECKING:
    from .pool import EditorPool
    from .protocol import Editor, EditStream

logger = logging.getLogger(__name__)

POLL_S = 0.02
"""How often the dispatcher looks for newly submitted requests while replica calls run and a replica is idle."""

Span = tuple[str, float, float, int]
"""``(stage, start, end, items)``, times from ``time.perf_counter()``: when one replica call (or edit call) ran."""

SpanCallback = Callable[[str, float, float, int], None]
"""``on_span(stage, start, end, items)`` (``time.perf_counter()`` times): called once per span as it ends, on the
thread that ended it; it must be thread-safe and quick."""


def report_span(on_span: SpanCallback | None, span: Span) -> None:
    """Hand ``span`` to ``on_span``; a failing callback is logged, never raised into the worker that ended the span
    (telemetry must not stop an edit or a judge call)."""
    if on_span is None:
        return
    try:
        on_span(*span)
    except Exception as exc:
        logger.warning("span callback failed for %s: %s: %s", span[0], type(exc).__name__, exc)


@dataclass
class _Replica:
    index: int
    handle: Any
    retired: bool = False
    busy_s: float = 0.0
    """Time this replica spent on calls of this pool (dispatch to answer, crash or timeout), since the start."""


@dataclass
class _Call:
    replica: _Replica
    indices: list[int]
    deadline: float
    not_before: float = 0.0
    started: float = 0.0
    started_perf: float = 0.0


class Dispatch:
    """The work queue of one ``edit`` call or one stream over the pool's live replicas; not thread-safe (one thread
    pumps it). ``on_done(index, result)`` is called once per request as its result is known, ``on_span`` once per
    replica call as it ends (answered, lost or timed out)."""

    def __init__(
        self,
        pool: EditorPool,
        on_done: Callable[[int, EditResult], None] | None = None,
        on_span: SpanCallback | None = None,
    ):
        self.pool = pool
        self.on_done = on_done
        self.on_span = on_span
        self.requests: list[EditRequest] = []
        self.results: list[EditResult | None] = []
        self.attempts: list[int] = []
        self.last_reason: list[str] = []
        self.spans: list[Span] = []
        recovering = {id(c.replica) for c in [*pool._probes.values(), *pool._restarting]}
        self.idle = deque(r for r in pool.live_replicas() if id(r) not in recovering)
        self.queue: deque[list[int]] = deque()
        self.calls: dict[Any, _Call] = {}

    @property
    def busy(self) -> bool:
        return bool(self.queue or self.calls)

    def add(self, requests: Sequence[EditRequest]) -> None:
        """Queue a batch: ordered by image size (so most chunks are one pipeline call), in balanced chunks."""
        start = len(self.requests)
        self.requests.extend(requests)
        self.results.extend([None] * len(requests))
        self.attempts.extend([0] * len(requests))
        self.last_reason.extend(["replica_died"] * len(requests))
        order = sorted(range(start, len(self.requests)), key=lambda i: (self.requests[i].image.size, i))
        self.queue.extend(balanced_chunks(order, self.pool.batch_size, max(1, len(self.pool.live_replicas()))))

    def cancel_queued(self) -> list[int]:
        """Drop the chunks not sent yet; their indices (they get no result)."""
        dropped = [i for indices in self.queue for i in indices]
        self.queue.clear()
        return dropped

    def _finish(self, i: int, result: EditResult) -> None:
        self.results[i] = result
        if self.on_done is not None:
            self.on_done(i, result)

    def _lost(self, call: _Call, reason: str) -> None:
        pool = self.pool
        pool.counters.replica_failures += 1
        for i in call.indices:
            self.last_reason[i] = reason
            if self.attempts[i] > pool.max_retries:
                self._finish(i, EditResult.failure(reason, attempts=self.attempts[i], replica=call.replica.index))
            else:  # alone this time, so that a request that kills its replica takes no other with it
                pool.counters.retries += 1
                self.queue.append([i])

    def _ended(self, call: _Call, now: float) -> None:
        call.replica.busy_s += now - call.started
        span = ("edit", call.started_perf, time.perf_counter(), len(call.indices))
        self.spans.append(span)
        report_span(self.on_span, span)

    def pump(self, max_wait_s: float | None = None) -> None:
        """Send what idle replicas can take, then wait (at most ``max_wait_s``) for one answer, deadline or probe.
        Raises :class:`~easyr1.pools.WorkerLost` when no replica is left."""
        import ray
        from ray.exceptions import RayError, RayTaskError

        pool = self.pool
        while self.queue and self.idle:
            replica, indices = self.idle.popleft(), self.queue.popleft()
            for i in indices:
                self.attempts[i] += 1
            ref = replica.handle.edit.remote([self.requests[i] for i in indices])
            now = time.monotonic()
            self.calls[ref] = _Call(
                replica, indices, now + pool.request_timeout_s, started=now, started_perf=time.perf_counter()
            )
        pool._send_due_probes()
        if not self.calls and not pool._probes and not pool._restarting:
            if pool._lost is not None and not pool.live_replicas():
                raise pool._lost
            for indices in self.queue:
                for i in indices:
                    self._finish(
                        i, EditResult.failure("no_replicas", attempts=self.attempts[i], last=self.last_reason[i])
                    )
            if self.queue:
                logger.error("%s pool: no live replica left; failing the remaining requests", pool.name)
            self.queue.clear()
            return
        pending = {**self.calls, **pool._probes}
        wake = [c.deadline for c in pending.values()] + [c.not_before for c in pool._restarting]
        wait_s = max(0.0, min(wake) - time.monotonic())
        if max_wait_s is not None:
            wait_s = min(wait_s, max_wait_s)
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=wait_s) if pending else ([], [])
        if not pending:
            time.sleep(wait_s)
        for ref in ready:
            if ref in pool._probes:
                if pool._probe_answered(ref):
                    self.idle.append(pool._probes.pop(ref).replica)
                continue
            call = self.calls.pop(ref)
            self._ended(call, time.monotonic())
            try:
                out = ray.get(ref)
            except RayTaskError as exc:  # the call failed outside the editor (e.g. serialisation)
                logger.warning("%s replica %d call failed: %s", pool.name, call.replica.index, exc)
                self._lost(call, "exception")
                self.idle.append(call.replica)
            except RayError as exc:
                logger.warning("%s replica %d lost: %s", pool.name, call.replica.index, type(exc).__name__)
                self._lost(call, "replica_died")
                pool._recover(call.replica, describe(exc))
            else:
                pool.counters.batches += 1
                for i, result in zip(call.indices, out, strict=True):
                    self._finish(i, result)
                self.idle.append(call.replica)
        now = time.monotonic()
        for ref, call in list(self.calls.items()):
            if now >= call.deadline:
                del self.calls[ref]
                self._ended(call, now)
                logger.warning("%s replica %d timed out; restarting it", pool.name, call.replica.index)
                self._lost(call, "timeout")
                pool._recover(call.replica, f"no answer within request_timeout_s={pool.request_timeout_s:g}s")
        for ref, probe in list(pool._probes.items()):
            if now >= probe.deadline:  # restarted but never answered (e.g. cannot be placed again)
                del pool._probes[ref]
                pool._retire(probe.replica, TimeoutError(f"not back after {pool.startup_timeout_s:.0f}s"))

    def run(self) -> list[EditResult]:
        """Pump until every request has its result (the blocking ``edit``)."""
        while self.busy:
            self.pump()
        missing = [i for i, r in enumerate(self.results) if r is None]
        if missing:  # a bug, not a backend failure: never hand out fewer results than requests
            raise RuntimeError(f"{self.pool.name} pool lost {len(missing)} results")
        return [r for r in self.results if r is not None]


def duplicate_result(result: EditResult, original_key: str) -> EditResult:
    """What an identical request gets: a copy of the image, naming the request that was edited."""
    return dataclasses.replace(
        result,
        image=result.image.copy() if result.image is not None else None,
        info={**result.info, "duplicate_of": original_key},
    )


class PoolEditStream:
    """An open stream of edits on an :class:`~easyr1.editing.pool.EditorPool` (``pool.open_stream()``).

    Holds the pool for its lifetime (an ``edit`` call waits until it closes). A dispatcher thread runs the pool's
    scheduler; :meth:`close` waits for every submitted request (``cancel=True``: drops the chunks not sent yet,
    whose futures are cancelled, and waits for the calls under way, each bounded by ``request_timeout_s``) and
    joins the thread. A scheduler error (e.g. :class:`~easyr1.pools.WorkerLost`: no replica left) is set on every
    unresolved future and raised by later ``submit`` calls. ``on_span`` gets each replica call's span as it ends, on
    the dispatcher thread.
    """

    def __init__(self, pool: EditorPool, on_span: SpanCallback | None = None):
        self.pool = pool
        self._cond = threading.Condition()
        self._inbox: list[EditRequest] = []
        self._closing = False
        self._cancel = False
        self.error: BaseException | None = None
        self._first: dict[str, int] = {}
        self._unique: list[EditRequest] = []
        self._handouts: list[list[concurrent.futures.Future]] = []
        """Per unique request: the futures of the requests it answers (the first one is the original)."""
        self._resolved: dict[int, EditResult] = {}
        self._all: list[concurrent.futures.Future] = []
        self._started: float | None = None
        self._last_done = 0.0
        pool._lock.acquire()
        try:
            if pool._lost is not None and not pool.live_replicas():
                raise pool._lost
            self._dispatch = Dispatch(pool, on_done=self._resolve, on_span=on_span)
            self._thread = threading.Thread(target=self._serve, name=f"{pool.name}-dispatch", daemon=True)
            self._thread.start()
        except BaseException:
            pool._lock.release()
            raise
        self._open = True

    @property
    def spans(self) -> list[Span]:
        """One ``("edit", start, end, items)`` per replica call so far (including lost and timed-out calls)."""
        return list(self._dispatch.spans)

    def submit(self, requests: Sequence[EditRequest]) -> list[concurrent.futures.Future]:
        """Queue ``requests``; one future per request, resolved with its :class:`EditResult` (a failure is a result,
        not an exception)."""
        include_metadata = self.pool.identity_includes_metadata
        identities = [request_identity(r, include_metadata=include_metadata) for r in requests]
        ready: list[tuple[concurrent.futures.Future, EditResult]] = []
        futures: list[concurrent.futures.Future] = []
        with self._cond:
            if self.error is not None:
                raise self.error
            if self._closing:
                raise RuntimeError("submit on a closed edit stream")
            if self._started is None:
                self._started = time.perf_counter()
            for request, identity in zip(requests, identities, strict=True):
                future: concurrent.futures.Future = concurrent.futures.Future()
                u = self._first.get(identity)
                if u is None:
                    u = self._first[identity] = len(self._unique)
                    self._unique.append(request)
                    self._handouts.append([future])
                    self._inbox.append(request)
                else:
                    self._handouts[u].append(future)
                    if u in self._resolved:
                        ready.append((future, duplicate_result(self._resolved[u], self._unique[u].key)))
                futures.append(future)
            self._all.extend(futures)
            self._cond.notify_all()
        for future, result in ready:
            _settle([future], results=[result])
        return futures

    def _resolve(self, u: int, result: EditResult) -> None:
        with self._cond:
            self._resolved[u] = result
            self._last_done = time.perf_counter()
            handouts = list(self._handouts[u])
        original = self._unique[u].key
        _settle(
            handouts, results=[result if k == 0 else duplicate_result(result, original) for k in range(len(handouts))]
        )

    def _serve(self) -> None:
        d = self._dispatch
        try:
            while True:
                with self._cond:
                    batch, self._inbox = self._inbox, []
                    if not batch and not d.busy:
                        if self._closing:
                            return
                        self._cond.wait(timeout=1.0)
                        continue
                    cancel = self._cancel
                if batch:
                    d.add(batch)
                if cancel:
                    for u in d.cancel_queued():
                        with self._cond:
                            handouts = list(self._handouts[u])
                        for future in handouts:
                            future.cancel()
                    if not d.busy:
                        continue
                d.pump(max_wait_s=POLL_S if d.idle else None)
        except BaseException as exc:  # e.g. WorkerLost: every open future learns it, later submits raise it
            logger.error("%s stream failed: %s", self.pool.name, describe(exc))
            with self._cond:
                self.error = exc
                pending = [f for f in self._all if not f.done()]
            _settle(pending, exc=exc)

    def close(self, *, cancel: bool = False) -> None:
        """Wait for every submitted request (``cancel``: drop the unsent ones), stop the dispatcher, count the
        stream as one ``edit`` call of the requests that were answered in the pool's counters (none when the
        scheduler failed, as a failed ``edit`` counts none) and release the pool. Safe to call twice."""
        if not self._open:
            return
        with self._cond:
            self._closing = True
            self._cancel = self._cancel or cancel
            self._cond.notify_all()
        try:
            self._thread.join()
            done = [f for f in self._all if f.done() and not f.cancelled()]
            if self.error is None and done:  # after a cancel: the edits that were made
                unique_results = list(self._resolved.values())
                wall = max(0.0, self._last_done - (self._started or self._last_done))
                self.pool._count([f.result() for f in done], len(unique_results), wall, unique_results)
        finally:
            self._open = False
            self.pool._lock.release()

    def __enter__(self) -> PoolEditStream:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(cancel=exc_type is not None)


class InProcessEditStream:
    """The stream interface over an editor that only has ``edit``: each ``submit`` is one ``edit`` call on one
    worker thread (in submit order). An exception of ``edit`` is set on that call's futures. ``on_span`` gets each
    ``edit`` call's span as it ends, on the worker thread."""

    def __init__(self, editor: Editor, on_span: SpanCallback | None = None):
        self.editor = editor
        self.on_span = on_span
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="easyr1-edit")
        self._spans: list[Span] = []
        self._lock = threading.Lock()
        self._calls: list[tuple[concurrent.futures.Future, list[concurrent.futures.Future]]] = []

    @property
    def spans(self) -> list[Span]:
        with self._lock:
            return list(self._spans)

    def submit(self, requests: Sequence[EditRequest]) -> list[concurrent.futures.Future]:
        futures: list[concurrent.futures.Future] = [concurrent.futures.Future() for _ in requests]
        batch = list(requests)

        def work() -> None:
            start = time.perf_counter()
            try:
                results = self.editor.edit(batch)
                if len(results) != len(batch):
                    raise RuntimeError(f"editor returned {len(results)} results for {len(batch)} requests")
            except BaseException as exc:
                _settle(futures, exc=exc)
                return
            finally:
                span = ("edit", start, time.perf_counter(), len(batch))
                with self._lock:
                    self._spans.append(span)
                report_span(self.on_span, span)
            _settle(futures, results=results)

        if batch:
            self._calls.append((self._executor.submit(work), futures))
        return futures

    def close(self, *, cancel: bool = False) -> None:
        """Wait for the edit calls (``cancel``: the ones not started are dropped, their futures cancelled)."""
        self._executor.shutdown(wait=True, cancel_futures=cancel)
        for call, futures in self._calls:
            if call.cancelled():
                for future in futures:
                    future.cancel()

    def __enter__(self) -> InProcessEditStream:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(cancel=exc_type is not None)


def _settle(
    futures: Sequence[concurrent.futures.Future],
    *,
    results: Sequence[EditResult] | None = None,
    exc: BaseException | None = None,
) -> None:
    """Resolve the futures not resolved (or cancelled) yet."""
    for k, future in enumerate(futures):
        try:
            if exc is not None:
                future.set_exception(exc)
            elif results is not None:
                future.set_result(results[k])
        except concurrent.futures.InvalidStateError:
            pass


def open_edit_stream(editor: Editor, on_span: SpanCallback | None = None) -> EditStream:
    """``editor.open_stream()`` when it streams (:class:`~easyr1.editing.protocol.StreamingEditor`), else an
    :class:`InProcessEditStream` over its ``edit``; ``on_span`` (given to the stream) gets each edit call's span as it
    ends."""
    from .protocol import StreamingEditor

    if isinstance(editor, StreamingEditor):
        return editor.open_stream(on_span=on_span)
    return InProcessEditStream(editor, on_span=on_span)
