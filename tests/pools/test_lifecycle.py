"""The pool lifecycle base: deadlines, the restart seam, and that every Ray pool is built on it."""

from __future__ import annotations

import time

import pytest

from easyr1.pools import Deadline, RayPool


def test_deadline_counts_down_and_expires():
    unlimited = Deadline(None)
    assert unlimited.remaining() is None and not unlimited.expired
    short = Deadline(0.05)
    first = short.remaining()
    assert 0.0 < first <= 0.05 and not short.expired
    time.sleep(0.06)
    assert short.remaining() == 0.0 and short.expired


def test_restart_is_the_named_seam_of_issue_21():
    pool = RayPool("test pool")
    with pytest.raises(NotImplementedError, match=r"test pool: restarting member 3 .*issue 21"):
        pool.restart(3)


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
