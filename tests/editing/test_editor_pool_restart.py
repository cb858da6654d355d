"""A SIGKILLed editor replica mid-batch: the pool replaces it and the batch comes back complete and unchanged;
past the restart limit, one clear error and no hang."""

from __future__ import annotations

import functools
import os
import signal
import threading
import time

import numpy as np
import psutil
import pytest

from easyr1.config.cluster import PoolPlacement
from easyr1.core.types import EditRequest
from easyr1.editing.pool import EditorPool
from easyr1.pools import WorkerLost
from easyr1.testing.simulated_editor import SimulatedEditor, render

pytestmark = pytest.mark.slow

PLACEMENT = PoolPlacement(num_cpus_per_worker=0.5)
_slow_editor = functools.partial(SimulatedEditor, 0.15)  # 0.3 s per chunk of 2


def batch_of(make_image, n: int) -> list[EditRequest]:
    return [EditRequest(make_image(i, 16, 16), f"edit {i}", 300 + i, f"k{i}/0") for i in range(n)]


def replica_pids(pool: EditorPool) -> list[int]:
    import ray

    return [ray.get(r.handle.ready.remote(), timeout=60)["pid"] for r in pool.replicas]


def kill_when_editing(pid: int, timeout_s: float = 30.0) -> bool:
    """SIGKILL ``pid`` once its Ray worker runs an ``edit`` call (its process title says so)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            if any("EditorReplica.edit" in part for part in psutil.Process(pid).cmdline()):
                os.kill(pid, signal.SIGKILL)
                return True
        except psutil.NoSuchProcess:
            return False
        time.sleep(0.002)
    return False


def test_sigkilled_replica_mid_batch_is_replaced_and_the_batch_is_unchanged(ray_local, make_image):
    with EditorPool(_slow_editor, num_replicas=2, batch_size=2, placement=PLACEMENT) as pool:
        batch = batch_of(make_image, 8)
        undisturbed = pool.edit(batch)
        assert all(r.ok for r in undisturbed)
        pool.drain_metrics()
        pids = replica_pids(pool)
        killed: list[bool] = []
        killer = threading.Thread(target=lambda: killed.append(kill_when_editing(pids[1])))
        killer.start()
        results = pool.edit(batch)
        killer.join()
        assert killed == [True], "the replica was not caught mid-call"
        assert [r.ok for r in results] == [True] * 8, [r.reason for r in results]
        for request, before, after in zip(batch, undisturbed, results, strict=True):
            assert np.array_equal(np.asarray(after.image), np.asarray(before.image))
            assert np.array_equal(np.asarray(after.image), np.asarray(render(request)))
        metrics = pool.drain_metrics()
        assert metrics["editor/restarts"] == 1 and metrics["editor/replica_failures"] == 1
        assert metrics["editor/replicas_alive"] == 2
        new_pids = replica_pids(pool)
        assert new_pids[0] == pids[0] and new_pids[1] != pids[1]  # a fresh process in the lost one's place
        assert pool.restarts == [0, 1]
        assert all(r.ok for r in pool.edit(batch_of(make_image, 4)))


def test_restart_limit_exceeded_is_one_clear_error_without_a_hang(ray_local, make_image):
    with EditorPool(_slow_editor, num_replicas=1, batch_size=2, max_replica_restarts=1, placement=PLACEMENT) as pool:
        batch = batch_of(make_image, 4)
        for attempt in range(2):
            (pid,) = replica_pids(pool)
            killer = threading.Thread(target=kill_when_editing, args=(pid,))
            killer.start()
            started = time.monotonic()
            if attempt == 0:  # the first loss is restarted
                assert all(r.ok for r in pool.edit(batch))
            else:  # the second is past max_replica_restarts=1
                with pytest.raises(
                    WorkerLost,
                    match=r"editor pool: member 0 lost \(replica 0: ActorDiedError: .*restart limit reached after 1 "
                    r"restart\(s\) \(worker.image_edit.max_replica_restarts=1\); no replica left\)",
                ):
                    pool.edit(batch)
            killer.join()
            assert time.monotonic() - started < 60
