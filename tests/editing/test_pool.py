"""The Ray editor pool: order, de-duplication, load balancing, replica crashes, per-item failures — and the tiny
Qwen-Image-Edit pipeline editing through it on CPU."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest

from easyr1.config.cluster import PoolPlacement
from easyr1.core.types import EditRequest
from easyr1.editing.factory import build_editor
from easyr1.editing.pool import EditorPool
from easyr1.editing.protocol import Editor
from easyr1.pools import WorkerLost
from easyr1.testing.simulated_editor import SimulatedEditor, render

pytestmark = pytest.mark.slow


def requests_for(make_image, n, tag=""):
    return [EditRequest(make_image(i % 5, 16, 16), f"edit {i}{tag}", 100 + i, f"s{i}/0") for i in range(n)]


@pytest.fixture(scope="module")
def pool(ray_local, tmp_path_factory):
    factory = functools.partial(SimulatedEditor, 0.01, tmp_path_factory.mktemp("faults"), allow_exit=True)
    placement = PoolPlacement(num_cpus_per_worker=0.5)
    with EditorPool(factory, num_replicas=2, batch_size=3, max_retries=2, placement=placement) as p:
        yield p


def test_pool_is_an_editor_and_keeps_order(pool, make_image):
    assert isinstance(pool, Editor)
    batch = requests_for(make_image, 11)
    results = pool.edit(batch)
    assert len(results) == 11 and all(r.ok for r in results)
    for request, result in zip(batch, results, strict=True):
        assert result.info["seed"] == request.seed
        assert np.array_equal(np.asarray(result.image), np.asarray(render(request)))
    assert len({r.info["pid"] for r in results}) == 2  # both replicas worked
    assert pool.edit([]) == []


def test_identical_requests_are_edited_once(pool, make_image):
    before = pool.stats()
    base = requests_for(make_image, 4)
    twin = dataclasses.replace(base[1], key="other/3", metadata={"x": 1})
    batch = [base[0], base[1], twin, base[1], base[2], base[3], base[0]]
    results = pool.edit(batch)
    after = pool.stats()
    assert after["unique"] - before["unique"] == 4
    assert after["dedupe_saved"] - before["dedupe_saved"] == 3
    assert all(r.ok for r in results)
    assert np.array_equal(np.asarray(results[2].image), np.asarray(results[1].image))
    assert results[2].image is not results[1].image
    assert results[2].info["duplicate_of"] == "s1/0" and "duplicate_of" not in results[1].info
    metrics = pool.drain_metrics()
    assert metrics["editor/dedupe_saved"] >= 3 and metrics["editor/replicas_alive"] == 2
    drained = pool.drain_metrics()  # drained: nothing left since the call above
    assert drained["editor/dedupe_saved"] == 0 and drained["editor/requests"] == 0


def test_per_replica_busy_share(pool, make_image):
    pool.drain_metrics()
    pool.edit(requests_for(make_image, 1, tag=" alone"))  # one chunk: one replica works, the other idles
    metrics = pool.drain_metrics()
    shares = sorted(metrics[f"editor/replica/{i}/busy_frac"] for i in (0, 1))
    assert shares[0] == 0.0 and 0.5 < shares[1] <= 1.0
    assert metrics["editor/replica_busy_frac_min"] == 0.0
    assert metrics["editor/replica_busy_frac"] == pytest.approx(sum(shares) / 2)

    pool.edit(requests_for(make_image, 12, tag=" both"))  # four chunks over two replicas
    metrics = pool.drain_metrics()
    shares = [metrics[f"editor/replica/{i}/busy_frac"] for i in (0, 1)]
    assert all(0.3 < share <= 1.0 for share in shares)
    assert metrics["editor/replica_busy_frac_min"] == min(shares)


def test_raising_item_fails_alone_others_succeed(pool, make_image):
    batch = requests_for(make_image, 7)
    batch[4] = dataclasses.replace(batch[4], instruction="explode !raise")
    batch[5] = dataclasses.replace(batch[5], instruction="flat !blank")
    results = pool.edit(batch)
    assert [r.ok for r in results] == [True, True, True, True, False, False, True]
    assert results[4].reason == "exception" and "simulated failure" in results[4].info["error"]
    assert results[5].reason == "blank_output"
    assert results[4].image is None and results[5].image is None
    metrics = pool.drain_metrics()
    assert metrics["editor/edits/failed/exception"] == 1 and metrics["editor/edits/failed/blank_output"] == 1


def test_replica_dying_mid_batch(pool, make_image):
    batch = requests_for(make_image, 8)
    batch[2] = dataclasses.replace(batch[2], instruction="crash !die")
    batch[6] = dataclasses.replace(batch[6], instruction="crash once !die-once")
    before = pool.stats()
    results = pool.edit(batch)
    after = pool.stats()
    assert len(results) == 8
    assert [r.ok for r in results] == [True, True, False, True, True, True, True, True]
    assert results[2].reason == "replica_died" and results[2].info["attempts"] == 3  # 1 + max_retries
    assert np.array_equal(np.asarray(results[6].image), np.asarray(render(batch[6])))
    assert after["replica_failures"] - before["replica_failures"] >= 4
    assert after["retries"] - before["retries"] >= 3
    assert after["failed"].get("replica_died", 0) - before["failed"].get("replica_died", 0) == 1
    # the pool restarted the replicas: it keeps working with both
    later = pool.edit(requests_for(make_image, 4))
    assert all(r.ok for r in later) and pool.stats()["replicas_alive"] == 2


def test_hung_replica_times_out_and_is_restarted(ray_local, make_image):
    placement = PoolPlacement(num_cpus_per_worker=0.5)
    with EditorPool(SimulatedEditor, num_replicas=1, max_retries=1, request_timeout_s=1.0, placement=placement) as pool:
        batch = requests_for(make_image, 3)
        batch[1] = dataclasses.replace(batch[1], instruction="stall !hang")
        results = pool.edit(batch)
        assert [r.ok for r in results] == [True, False, True]
        assert results[1].reason == "timeout" and results[1].info["attempts"] == 2
        assert pool.stats()["failed"] == {"timeout": 1}
        assert all(r.ok for r in pool.edit(requests_for(make_image, 2)))


def test_replica_that_cannot_start_is_reported(ray_local, tiny_cfg):
    broken = dataclasses.replace(tiny_cfg, model_path="/nonexistent/editor")
    with pytest.raises(RuntimeError, match="failed to start"):
        EditorPool.from_config(broken, PoolPlacement(num_cpus_per_worker=0.5))


def test_tiny_pipeline_edits_through_the_pool(ray_local, tiny_cfg, make_image, monkeypatch):
    batch = [EditRequest(make_image(i), f"Add a red ball {i}", 5 + i, f"r{i}/0") for i in range(5)]
    batch.append(batch[0])
    # a path relative to the driver's working directory reaches the replicas resolved
    monkeypatch.chdir(tiny_cfg.model_path + "/..")
    cfg = dataclasses.replace(tiny_cfg, num_replicas=2, batch_size=2, model_path="editor")
    with EditorPool.from_config(cfg, PoolPlacement(num_cpus_per_worker=0.5)) as pool:
        results = pool.edit(batch)
        assert [r.ok for r in results] == [True] * 6, [r.reason for r in results]
        assert all(r.image.size == (64, 64) for r in results)
        assert len({r.info["seed"] for r in results}) == 5
        assert pool.stats()["dedupe_saved"] == 1
    local = build_editor(tiny_cfg).edit(batch[:5])  # same seeds in this process → same images
    for remote, here in zip(results[:5], local, strict=True):
        diff = np.abs(np.asarray(remote.image, dtype=np.int16) - np.asarray(here.image, dtype=np.int16))
        assert diff.max() <= 1


def test_replica_that_cannot_come_back_is_retired(ray_local, make_image):
    placement = PoolPlacement(num_cpus_per_worker=0.5)
    with EditorPool(
        functools.partial(SimulatedEditor, allow_exit=True),
        num_replicas=2,
        batch_size=2,
        max_retries=2,
        max_replica_restarts=0,
        placement=placement,
    ) as pool:
        batch = requests_for(make_image, 4)
        batch[3] = dataclasses.replace(batch[3], instruction="crash !die")
        # the request kills both replicas in turn; neither may restart: one clear error naming the last and why
        with pytest.raises(WorkerLost, match=r"editor pool: member \d lost \(replica \d: .*restart limit reached"):
            pool.edit(batch)
        assert pool.stats()["replicas_alive"] == 0
        with pytest.raises(WorkerLost, match="no replica left"):
            pool.edit(requests_for(make_image, 2))
        assert pool.drain_metrics()["editor/replicas_alive"] == 0
