"""A pool restarted as a whole (the actor pool's FSDP world): ``lost_members`` tells a dead member from live ones,
``replace_all`` starts every member again with the same arguments, up to ``max_restarts``."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from easyr1.pools import Deadline, RayPool, WorkerLost

pytestmark = pytest.mark.slow


def gone(pid: int, timeout_s: float = 60.0) -> bool:
    """Whether process ``pid`` ends within ``timeout_s`` (``ray.kill`` is asynchronous)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def test_lost_members_and_replace_all_up_to_the_limit(ray_session):
    import ray

    class _Member:  # defined here: Ray ships it by value (the workers cannot import the test module)
        def __init__(self, tag: str):
            self.tag = tag

        def info(self):
            return self.tag, os.getpid()

    pool = RayPool("probe pool", max_restarts=1, restart_config="x.max_restarts")
    handles = pool.start_members(_Member, {"num_cpus": 0.1}, 2, lambda i: ((f"m{i}",), {}))
    before = ray.get([h.info.remote() for h in handles], timeout=60)
    assert pool.lost_members(handles, lambda h: h.info.remote(), Deadline(30)) == {}
    os.kill(before[1][1], signal.SIGKILL)
    lost = pool.lost_members(handles, lambda h: h.info.remote(), Deadline(30))
    assert list(lost) == [1] and "ActorDiedError" in lost[1]

    fresh = pool.replace_all(handles, 1, "killed")
    after = ray.get([h.info.remote() for h in fresh], timeout=60)
    assert [tag for tag, _ in after] == ["m0", "m1"]  # same constructor arguments
    assert {pid for _, pid in after}.isdisjoint({pid for _, pid in before})  # every member is a new process
    assert pool.pool_restarts == 1 and pool.restarts == [0, 0]
    assert gone(before[0][1]), "the surviving member was not killed"

    with pytest.raises(
        WorkerLost,
        match=r"probe pool: member 0 lost \(again; restart limit reached after 1 "
        r"restart\(s\) \(x.max_restarts=1\)\)",
    ):
        pool.replace_all(fresh, 0, "again")
    assert all(gone(pid) for _, pid in after)  # past the limit the members are killed all the same
