"""The pool lifecycle base: deadlines, the restart seam, and that every Ray pool is built on it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from easyr1.pools import Deadline, RayPool, WorkerLost, is_lost


def test_deadline_counts_down_and_expires():
    unlimited = Deadline(None)
    assert unlimited.remaining() is None and not unlimited.expired
    short = Deadline(0.05)
    first = short.remaining()
    assert 0.0 < first <= 0.05 and not short.expired
    time.sleep(0.06)
    assert short.remaining() == 0.0 and short.expired


def test_replace_needs_started_members():
    pool = RayPool("test pool", max_restarts=1)
    with pytest.raises(RuntimeError, match=r"test pool: replace before start_members"):
        pool.replace(0, None, "lost")


def test_every_ray_pool_uses_the_base():
    from easyr1.actor.pool import ActorPool
    from easyr1.editing.pool import EditorPool
    from easyr1.rollout.pool import RolloutPool

    for cls in (ActorPool, RolloutPool, EditorPool):
        assert issubclass(cls, RayPool), cls


@pytest.mark.slow
def test_unplaceable_members_fail_with_one_clear_error(ray_session):
    class Member:
        def ping(self):
            return True

    pool = RayPool("probe pool")
    handles = pool.start_members(Member, {"num_cpus": 1, "resources": {"nowhere": 1.0}}, 2, lambda i: ((), {}))
    assert len(pool.start_args) == 2
    with pytest.raises(RuntimeError, match=r"probe pool: 2 worker\(s\) asking for .*'nowhere': 1\.0"):
        pool.wait_ready([h.ping.remote() for h in handles], Deadline(1.0))
    pool.kill_members(handles)


@pytest.mark.slow
def test_restart_replaces_a_killed_member_up_to_the_limit(ray_session, tmp_path: Path):
    import ray

    class _Member:
        def __init__(self, tag: str, broken_flag: str):
            if os.path.exists(broken_flag):
                raise RuntimeError("cannot start (flag)")
            self.tag = tag

        def info(self):
            return self.tag, os.getpid()

    flag = str(tmp_path / "broken")
    pool = RayPool("probe pool", max_restarts=2, restart_config="x.max_restarts")
    (handle,) = pool.start_members(_Member, {"num_cpus": 0.1}, 1, lambda i: ((f"m{i}", flag), {}))
    tag, pid = ray.get(handle.info.remote(), timeout=60)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ray.exceptions.RayActorError) as lost:
        ray.get(handle.info.remote(), timeout=60)
    assert is_lost(lost.value) and not is_lost(ValueError())
    fresh = pool.restart(0, handle, cause="killed", ready=lambda h: h.info.remote(), deadline=Deadline(60))
    tag2, pid2 = ray.get(fresh.info.remote(), timeout=60)
    assert tag2 == tag and pid2 != pid and pool.restarts == [1]  # same constructor arguments, new process
    Path(flag).touch()  # the next fresh actor cannot start: one clear error, no hang
    started = time.monotonic()
    with pytest.raises(WorkerLost, match=r"probe pool: member 0 lost \(again; the restarted member did not start"):
        pool.restart(0, fresh, cause="again", ready=lambda h: h.info.remote(), deadline=Deadline(60))
    assert time.monotonic() - started < 60 and pool.restarts == [2]
    with pytest.raises(WorkerLost, match=r"restart limit reached after 2 restart\(s\) \(x.max_restarts=2\)"):
        pool.restart(0, fresh, cause="third", ready=lambda h: h.info.remote(), deadline=Deadline(60))
