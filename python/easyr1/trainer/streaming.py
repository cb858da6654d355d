"""Scoring within a step as the responses arrive: each rollout chunk is parsed and its edits submitted at once, each
edited image is sent to the judge as soon as it exists, and the rewards are combined when every sample is done.

The result equals :meth:`RewardPipeline.score` of the outputs in prompt order (rows' order, then ``sample_index``):
the same requests are built by the same helpers, each sample's edit and judge results are stored at its place, and
the counts, masks and combination are computed once everything has arrived — only *when* the calls run differs.
One caveat: identical edit requests in different chunks name the first *submitted* one in ``duplicate_of``. A judge
whose results depend on the other requests of its call declares ``batch_dependent = True`` (the sandbox's
shuffled-judge control): it is then called as in the staged path — once for every sample in prompt order after the
last edit, then for the preliminary images — so only the edits stream.

Threads: the editor stream's dispatcher (the pool) or one edit worker (an in-process editor) resolves edit futures;
their callbacks build judge requests and hand them to the judge — the HTTP judge's own event loop when it has
``submit_batch``, else a small thread pool calling ``score_batch([request])``. Failures: a failed edit is masked
``edit:<why>`` and a failed judge result ``judge:<why>``, exactly as staged; an *exception* of the editor, the judge
or the rollout iterator stops the pass: unsent edits are dropped, calls under way are awaited (each bounded by its
own deadline), every thread is joined, and the first exception is raised once.

Spans: the result's ``spans`` hold every edit call and judge call; with ``on_span``, each is also reported as soon as
it ends, on the thread that ended it (the editor stream's dispatcher or edit worker, the judge's callback thread), so a
caller that keeps a timeline (``off_policy_1``'s background scoring runs across a step boundary) records a call in the
step it ended in — not when the whole scoring returns. ``ScoredBatch.spans`` holds the same spans again: a caller that
passes ``on_span`` must not add them a second time.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from easyr1.core.types import EditResult, EditSample, RolloutOutput
from easyr1.editing.dispatch import SpanCallback, open_edit_stream, report_span
from easyr1.reward import EditAction
from easyr1.reward.judge.protocol import Judge, JudgeRequest, JudgeResult

from .scoring import ScoredBatch, Span, count_edits, count_judged

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from .scoring import RewardPipeline

logger = logging.getLogger(__name__)

MAX_JUDGE_THREADS = 8
"""Most threads calling a judge that has no ``submit_batch`` (bounded further by ``judge.max_concurrency``)."""


@runtime_checkable
class SubmitsJudgeBatches(Protocol):
    """A judge that starts a batch without blocking (the HTTP judge: on its own event loop)."""

    def submit_batch(self, requests: Sequence[JudgeRequest]) -> concurrent.futures.Future[list[JudgeResult]]: ...


class JudgeCalls:
    """Judge batches started from any thread; records a span per call and waits for all of them with a stall
    deadline (no answer at all within ``stall_s`` → :class:`TimeoutError`); ``on_span`` gets each call's span as it
    ends."""

    def __init__(self, judge: Judge, threads: int, stall_s: float, on_span: SpanCallback | None = None):
        self.judge = judge
        self.stall_s = stall_s
        self.on_span = on_span
        self._lock = threading.Lock()
        self._pending: set[concurrent.futures.Future] = set()
        self.spans: list[Span] = []
        self.first: float | None = None
        self.last: float | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        if not isinstance(judge, SubmitsJudgeBatches):
            self._executor = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="easyr1-judge-call")

    def submit(
        self,
        requests: list[JudgeRequest],
        done: Callable[[list[JudgeResult] | None, BaseException | None], None],
    ) -> None:
        """Score ``requests``; ``done(results, error)`` is called once, on whatever thread finished the call."""
        start = time.perf_counter()

        def finished(future: concurrent.futures.Future) -> None:
            end = time.perf_counter()
            span = ("judge", start, end, len(requests))
            with self._lock:
                self.spans.append(span)
                self.last = end if self.last is None else max(self.last, end)
            report_span(self.on_span, span)
            try:
                if future.cancelled():
                    done(None, concurrent.futures.CancelledError())
                elif future.exception() is not None:
                    done(None, future.exception())
                else:
                    results = future.result()
                    if len(results) != len(requests):
                        raise RuntimeError(f"judge returned {len(results)} results for {len(requests)} requests")
                    done(results, None)
            except BaseException as exc:  # the callback's own failure must not vanish on a pool thread
                done(None, exc)
            finally:
                with self._lock:
                    self._pending.discard(future)

        with self._lock:
            self.first = start if self.first is None else self.first
        if self._executor is None:
            future = self.judge.submit_batch(requests)  # type: ignore[attr-defined]
        else:
            future = self._executor.submit(self.judge.score_batch, requests)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(finished)

    def wait(self) -> None:
        """Until every call has answered; :class:`TimeoutError` when none answers for ``stall_s``."""
        while True:
            with self._lock:
                pending = list(self._pending)
            if not pending:
                return
            done, _ = concurrent.futures.wait(pending, timeout=self.stall_s, return_when="FIRST_COMPLETED")
            if not done:
                raise TimeoutError(f"judge: {len(pending)} call(s) without an answer for {self.stall_s:g}s")
            time.sleep(0)  # let the done-callbacks that drop them from the pending set run

    def close(self, *, cancel: bool = False) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=not cancel, cancel_futures=cancel)


class _Pass:
    """What one streaming pass knows about each sample, keyed by (row position, sample_index)."""

    def __init__(self, pipeline: RewardPipeline, rows: Sequence[EditSample]):
        self.p = pipeline
        self.by_id = pipeline.rows_by_id(rows)
        self.position = {row.id: k for k, row in enumerate(rows)}
        self.lock = threading.Lock()
        self.outputs: dict[tuple[int, int], RolloutOutput] = {}
        self.fmt: dict[tuple[int, int], float] = {}
        self.instructions: dict[tuple[int, int], str | None] = {}
        self.actions: dict[tuple[int, int], EditAction] = {}
        self.missing = 0
        self.edit_results: dict[tuple[int, int], EditResult] = {}
        self.judge_results: dict[tuple[int, int], JudgeResult] = {}
        self.reasons: dict[tuple[int, int], str | None] = {}
        self.final_images: dict[tuple[int, int], Image.Image] = {}
        self.error: BaseException | None = None
        self.edit_first: float | None = None
        self.edit_last: float | None = None

    def fail(self, exc: BaseException) -> None:
        with self.lock:
            if self.error is None:
                self.error = exc
                logger.error("streaming scoring: %s: %s (stopping the pass)", type(exc).__name__, exc)

    def place(self, out: RolloutOutput) -> tuple[int, int]:
        if out.prompt_id not in self.position:
            raise ValueError(f"rollout output for unknown prompt {out.prompt_id!r}")
        key = (self.position[out.prompt_id], out.sample_index)
        if key in self.outputs:
            raise ValueError(f"rollout output {out.prompt_id}/{out.sample_index} arrived twice")
        self.outputs[key] = out
        return key


def score_stream(
    pipeline: RewardPipeline,
    rows: Sequence[EditSample],
    chunks: Iterable[Sequence[RolloutOutput]],
    on_span: SpanCallback | None = None,
) -> ScoredBatch:
    """:meth:`RewardPipeline.score` of the outputs of ``chunks`` in prompt order, scored as they arrive; ``on_span``
    gets each edit and judge call's span as it ends (they are in the result's ``spans`` too)."""
    cfg = pipeline.cfg
    st = _Pass(pipeline, rows)
    stall_s = cfg.judge.batch_deadline_s + cfg.judge.outage_budget_s
    threads = max(1, min(MAX_JUDGE_THREADS, cfg.judge.max_concurrency))
    judge = JudgeCalls(pipeline.judge, threads, stall_s, on_span=on_span)
    parse_s = 0.0
    preliminary: dict[str, Any] = {}
    batch_dependent = bool(getattr(pipeline.judge, "batch_dependent", False))
    deferred: dict[tuple[int, int], JudgeRequest] = {}

    def judged(keys: list[tuple[int, int]]) -> Callable[[list[JudgeResult] | None, BaseException | None], None]:
        def done(results: list[JudgeResult] | None, error: BaseException | None) -> None:
            if error is not None or results is None:
                st.fail(error or RuntimeError("judge call ended without results"))
                return
            with st.lock:
                for key, res in zip(keys, results, strict=True):
                    st.judge_results[key] = res
                    if not res.valid:
                        st.reasons[key] = f"judge:{res.reason or 'failed'}"

        return done

    def to_judge(key: tuple[int, int], res: EditResult | None) -> None:
        out = st.outputs[key]
        request, reason = pipeline.judge_request(st.by_id[out.prompt_id], out, st.actions[key], res)
        with st.lock:
            st.reasons[key] = reason
            if request is not None:
                st.final_images[key] = request.edited_image
        if request is None or st.error is not None:
            return
        if batch_dependent:
            with st.lock:
                deferred[key] = request
        else:
            judge.submit([request], judged([key]))

    def edited(key: tuple[int, int]) -> Callable[[concurrent.futures.Future], None]:
        def done(future: concurrent.futures.Future) -> None:
            try:
                if future.cancelled():
                    return  # dropped after another failure, which is what the pass raises
                if future.exception() is not None:
                    st.fail(future.exception())  # type: ignore[arg-type]
                    return
                res = future.result()
                with st.lock:
                    st.edit_results[key] = res
                    st.edit_last = time.perf_counter()
                to_judge(key, res)
            except BaseException as exc:
                st.fail(exc)

        return done

    def judge_preliminary() -> None:
        todo, requests = pipeline.preliminary_requests(rows)

        def done(results: list[JudgeResult] | None, error: BaseException | None) -> None:
            if error is not None or results is None:
                st.fail(error or RuntimeError("preliminary judge call ended without results"))
            else:
                preliminary["results"] = results

        preliminary["todo"] = todo
        if requests:
            judge.submit(requests, done)

    edits = open_edit_stream(pipeline.editor, on_span=on_span)
    try:
        if pipeline.reward_cfg.improvement and not batch_dependent:
            judge_preliminary()  # at once: it does not wait for any response
        for chunk in chunks:
            t0 = time.perf_counter()
            keys, requests = [], []
            for out in chunk:
                key = st.place(out)
                st.fmt[key], st.instructions[key], st.actions[key], missing = pipeline.parse_one(out.text)
                st.missing += missing
                if st.actions[key] is EditAction.EDIT:
                    keys.append(key)
                    requests.append(pipeline.edit_request(st.by_id[out.prompt_id], out, st.instructions[key]))
            parse_s += time.perf_counter() - t0
            if requests:
                st.edit_first = st.edit_first or time.perf_counter()
                for key, future in zip(keys, edits.submit(requests), strict=True):
                    future.add_done_callback(edited(key))
            for out in chunk:
                key = (st.position[out.prompt_id], out.sample_index)
                if st.actions[key] is EditAction.SKIP_EDIT:
                    to_judge(key, None)
            if st.error is not None:
                break
        _close_chunks(chunks)
        edits.close(cancel=st.error is not None)
        judge.wait()
        if batch_dependent and st.error is None:  # the staged order of judge calls
            keys = sorted(deferred)
            if keys:
                judge.submit([deferred[k] for k in keys], judged(keys))
                judge.wait()
            if pipeline.reward_cfg.improvement and st.error is None:
                judge_preliminary()
                judge.wait()
    except BaseException as exc:
        st.fail(exc)
        for clean_up in (lambda: _close_chunks(chunks), lambda: edits.close(cancel=True), judge.wait):
            try:
                clean_up()
            except Exception as also:  # the first failure is the one raised
                logger.error("streaming scoring: while stopping: %s: %s", type(also).__name__, also)
        judge.close(cancel=True)
        raise
    judge.close()
    if st.error is not None:
        raise st.error
    return _assemble(pipeline, rows, st, judge, edits.spans, parse_s, preliminary)


def _close_chunks(chunks: Iterable[Any]) -> None:
    close = getattr(chunks, "close", None)  # a generator: its clean-up runs now, not at garbage collection
    if callable(close):
        close()


def _assemble(
    pipeline: RewardPipeline,
    rows: Sequence[EditSample],
    st: _Pass,
    judge: JudgeCalls,
    edit_spans: list[Span],
    parse_s: float,
    preliminary: dict[str, Any],
) -> ScoredBatch:
    """Everything in prompt order, then counts and combination exactly as the staged path."""
    import torch

    keys = sorted(st.outputs)
    outputs = [st.outputs[k] for k in keys]
    n = len(keys)
    counts: Counter = Counter(total=n)
    counts["no_re_edit"] += st.missing
    fmt: torch.Tensor = torch.tensor([st.fmt[k] for k in keys], dtype=torch.float64)
    actions = [st.actions[k] for k in keys]
    edit_results = [st.edit_results[k] for k in keys if k in st.edit_results]
    if len(edit_results) != sum(a is EditAction.EDIT for a in actions):
        raise RuntimeError(f"streaming scoring lost edit results ({len(edit_results)} for {n} samples)")
    count_edits(counts, edit_results)
    judge_results = [st.judge_results.get(k) for k in keys]
    count_judged(counts, judge_results)
    reasons = [st.reasons.get(k) for k in keys]
    timings: dict[str, float] = {}
    if st.edit_first is not None and st.edit_last is not None:
        timings["edit"] = st.edit_last - st.edit_first
    else:
        timings["edit"] = 0.0
    timings["judge"] = (judge.last - judge.first) if judge.first is not None and judge.last is not None else 0.0
    t0 = time.perf_counter()
    failures = None
    if pipeline.reward_cfg.improvement:
        failures = pipeline.apply_preliminary(preliminary.get("todo", []), preliminary.get("results", []))
    rewards, valid, dims = pipeline._combine(rows, outputs, actions, reasons, judge_results, fmt, failures)
    timings["reward"] = time.perf_counter() - t0 + parse_s
    return ScoredBatch(
        rewards=rewards,
        valid=valid,
        format_scores=fmt,
        dimension_scores=dims,
        reasons=reasons,
        re_edits=[st.instructions[k] for k in keys],
        texts=[out.text for out in outputs],
        actions=[a.value for a in actions],
        edit_latencies=[res.latency_s for res in edit_results],
        final_images=[st.final_images.get(k) for k in keys],
        counts=counts,
        timings=timings,
        judge_results=judge_results,
        spans=sorted([*edit_spans, *judge.spans], key=lambda s: (s[1], s[0])),
        outputs=outputs,
    )
