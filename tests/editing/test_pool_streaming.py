"""``EditorPool.open_stream``: requests submitted over time get the same results as ``edit``, identical requests are
edited once across submits, a replica dying mid-stream is replaced and its requests edited once, and a pool with no
replica left fails every open future (no hang)."""

from __future__ import annotations

import functools
import threading
import time

import numpy as np
import pytest

from easyr1.config.cluster import PoolPlacement
from easyr1.core.types import EditRequest
from easyr1.editing.dispatch import InProcessEditStream, open_edit_stream
from easyr1.editing.pool import EditorPool
from easyr1.editing.protocol import EditStream, StreamingEditor
from easyr1.pools import WorkerLost
from easyr1.testing.simulated_editor import SimulatedEditor, render

pytestmark = pytest.mark.slow

PLACEMENT = PoolPlacement(num_cpus_per_worker=0.5)


def requests_for(make_image, n: int, tag: str = "") -> list[EditRequest]:
    return [EditRequest(make_image(i, 16, 16), f"edit {i}{tag}", 100 + i, f"s{i}/0") for i in range(n)]


@pytest.fixture(scope="module")
def pool(ray_local, tmp_path_factory):
    factory = functools.partial(SimulatedEditor, 0.05, tmp_path_factory.mktemp("faults"), allow_exit=True)
    with EditorPool(factory, num_replicas=2, batch_size=2, max_retries=2, placement=PLACEMENT) as p:
        yield p


def test_stream_equals_edit_and_counts_one_call(pool, make_image):
    assert isinstance(pool, StreamingEditor)
    batch = requests_for(make_image, 7)
    batch.append(EditRequest(batch[1].image.copy(), batch[1].instruction, batch[1].seed, "dup/0"))  # = request 1
    pool.drain_metrics()
    staged = pool.edit(batch)
    staged_metrics = pool.drain_metrics()
    with pool.open_stream() as stream:
        assert isinstance(stream, EditStream)
        futures = stream.submit(batch[:3])
        first = [f.result(timeout=60) for f in futures]  # resolved while the stream is still open
        futures += stream.submit(batch[3:5])
        futures += stream.submit(batch[5:])  # the duplicate of request 1 arrives two submits later
    streamed = [f.result(timeout=0) for f in futures]
    metrics = pool.drain_metrics()
    assert first == streamed[:3]
    for request, a, b in zip(batch, staged, streamed, strict=True):
        assert a.ok and b.ok
        assert np.array_equal(np.asarray(b.image), np.asarray(render(request)))
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert streamed[-1].info["duplicate_of"] == "s1/0" and streamed[-1].image is not streamed[1].image
    for key in ("editor/requests", "editor/edits/ok", "editor/dedupe_saved", "editor/edits/failed"):
        assert metrics[key] == staged_metrics[key], key
    assert metrics["editor/dedupe_saved"] == 1 and pool.counters.calls >= 2
    spans = stream.spans
    assert spans and all(stage == "edit" and end >= start for stage, start, end, _ in spans)
    assert sum(items for *_, items in spans) == 7  # unique requests, one replica call each


def test_replica_dying_mid_stream_is_replaced_and_each_request_edited_once(pool, make_image):
    pool.drain_metrics()
    batch = requests_for(make_image, 4, tag=" a")
    doomed = EditRequest(make_image(50, 16, 16), "edit !die-once x", 7, "doomed/0")
    calls: list = []
    with pool.open_stream() as stream:
        futures = stream.submit(batch[:2])
        futures += stream.submit([doomed])
        futures += stream.submit(batch[2:])
        for f in futures:
            f.add_done_callback(calls.append)
    results = [f.result(timeout=0) for f in futures]
    assert [r.ok for r in results] == [True] * 5, [r.reason for r in results]
    assert len(calls) == 5  # every future resolved exactly once
    metrics = pool.drain_metrics()
    assert metrics["editor/restarts"] == 1 and metrics["editor/replica_failures"] == 1
    assert metrics["editor/requests"] == 5 and metrics["editor/edits/ok"] == 5 and metrics["editor/retries"] >= 1
    assert metrics["editor/replicas_alive"] == 2


def test_no_replica_left_fails_the_open_futures_without_a_hang(ray_local, make_image):
    factory = functools.partial(SimulatedEditor, 0.0, allow_exit=True)
    with EditorPool(factory, num_replicas=1, batch_size=2, max_replica_restarts=0, placement=PLACEMENT) as pool:
        before = set(threading.enumerate())
        start = time.monotonic()
        stream = pool.open_stream()
        futures = stream.submit([EditRequest(make_image(1, 16, 16), "edit !die", 1, "k/0")])
        with pytest.raises(WorkerLost):
            futures[0].result(timeout=60)
        with pytest.raises(WorkerLost):
            stream.submit(requests_for(make_image, 1))
        stream.close()
        assert time.monotonic() - start < 60
        assert not [t for t in threading.enumerate() if t not in before and t.is_alive()]
        with pytest.raises(WorkerLost):  # the pool is free again and says why it cannot edit
            pool.edit(requests_for(make_image, 1))


def test_in_process_editor_streams_through_one_worker(make_image):
    editor = SimulatedEditor(0.0)
    stream = open_edit_stream(editor)
    assert isinstance(stream, InProcessEditStream)
    batch = requests_for(make_image, 3)
    futures = stream.submit(batch[:2]) + stream.submit(batch[2:])
    stream.close()
    for request, f in zip(batch, futures, strict=True):
        assert np.array_equal(np.asarray(f.result().image), np.asarray(render(request)))
    assert [items for *_, items in stream.spans] == [2, 1] and editor.calls == 2


def test_in_process_stream_reports_each_call_on_its_worker(make_image):
    got = []
    stream = open_edit_stream(
        SimulatedEditor(0.0), on_span=lambda *span: got.append((span, threading.current_thread()))
    )
    futures = stream.submit(requests_for(make_image, 2))
    futures[0].result(timeout=30)
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:  # reported from the worker's finally, around the results
        time.sleep(0.01)
    assert len(got) == 1  # before close: as the call ended
    stream.submit(requests_for(make_image, 1, tag=" b"))
    stream.close()
    assert [span for span, _ in got] == stream.spans
    assert all(thread is not threading.main_thread() for _, thread in got)


def test_pool_stream_reports_each_replica_call_as_it_ends(pool, make_image):
    got = []
    stream = open_edit_stream(pool, on_span=lambda *span: got.append((span, threading.current_thread().name)))
    futures = stream.submit(requests_for(make_image, 5, tag=" s"))
    for f in futures:
        assert f.result(timeout=60).ok
    deadline = time.monotonic() + 5
    while sum(span[3] for span, _ in got) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sum(span[3] for span, _ in got) == 5  # every call reported while the stream is still open
    stream.close()
    assert [span for span, _ in got] == stream.spans
    assert {name for _, name in got} == {f"{pool.name}-dispatch"}


def test_cancelled_stream_counts_exactly_the_edits_made(pool, make_image):
    pool.drain_metrics()
    stream = pool.open_stream()
    futures = stream.submit(requests_for(make_image, 8, tag=" c"))
    time.sleep(0.1)  # the first chunks are under way
    stream.close(cancel=True)
    done = [f for f in futures if not f.cancelled()]
    assert all(f.done() and f.result().ok for f in done)
    assert 0 < len(done) < 8  # the calls under way were awaited, the queued ones dropped
    metrics = pool.drain_metrics()
    assert metrics["editor/requests"] == metrics["editor/edits/ok"] == len(done)
    assert sum(items for *_, items in stream.spans) == len(done)
    assert all(r.ok for r in pool.edit(requests_for(make_image, 2, tag=" after")))  # the pool is free again
