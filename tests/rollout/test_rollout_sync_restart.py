"""An engine SIGKILLed in the middle of a collective weight broadcast: a gloo broadcast does not fail when a receiver
dies (the sender and the other receivers would wait for the group's timeout, 600 s), so the rollout pool replaces
every engine, rebuilds the group and syncs again — the run goes on within seconds, with the engines holding the
actor's weights."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

import psutil
import pytest
from rollout_testkit import train_once

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pools(ray_session, make_config):
    from easyr1.actor.pool import ActorPool
    from easyr1.rollout.pool import RolloutPool

    cfg = make_config(num_workers=1, n=2)
    cfg.worker.rollout.num_engines = 2
    cfg.worker.rollout.weight_sync_bucket_mb = 1
    cfg.worker.rollout.max_restarts = 2
    actor = ActorPool(cfg)
    rollout = RolloutPool(cfg)
    yield actor, rollout
    rollout.shutdown()
    actor.shutdown()


def pid_of(handle) -> int:
    import ray

    return ray.get(handle.__ray_call__.remote(lambda self: os.getpid()), timeout=60)


def wait_for_call(pid: int, call: str, timeout_s: float = 60.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        with contextlib.suppress(psutil.Error):
            if any(call in part for part in psutil.Process(pid).cmdline()):
                return True
        time.sleep(0.01)
    return False


def test_engine_killed_mid_broadcast_is_replaced_and_the_sync_completes(pools) -> None:
    actor, rollout = pools
    rollout.sync_weights(actor, check=False)  # the collective group exists: the next sync goes straight to it
    train_once(actor, rollout)  # new actor weights, not yet in the engines
    assert rollout.probe_difference(actor) > 1e-3
    rollout.drain_metrics()
    engine_pid, actor_pid = pid_of(rollout.engines[1]), pid_of(actor.workers[0])
    rollout.cfg.worker.rollout.sync_probe_tolerance = 1e-4
    result: dict = {}

    def sync() -> None:
        try:
            result["metrics"] = rollout.sync_weights(actor, check=True)
        except BaseException as exc:  # reported below
            result["error"] = exc

    # Hold the sender until the engines sit in receive_weights, then kill one: it dies mid-sync for certain.
    os.kill(actor_pid, signal.SIGSTOP)
    started = time.monotonic()
    thread = threading.Thread(target=sync)
    try:
        thread.start()
        assert wait_for_call(engine_pid, "receive_weights"), "engine 1 never entered receive_weights"
        os.kill(engine_pid, signal.SIGKILL)
    finally:
        os.kill(actor_pid, signal.SIGCONT)
    thread.join(timeout=300)
    rollout.cfg.worker.rollout.sync_probe_tolerance = None
    assert not thread.is_alive(), "the sync hung after an engine was lost mid-broadcast"
    assert "error" not in result, result.get("error")
    elapsed = time.monotonic() - started
    assert elapsed < 120, f"recovery took {elapsed:.0f}s (the group's own timeout is 600 s)"
    metrics = result["metrics"]
    # engine 1 was lost; engine 0 was blocked in the same broadcast and is replaced too
    assert rollout.restarts == [1, 1] and metrics["rollout/restarts"] == 2
    assert metrics["rollout/sync_bytes"] > 0 and metrics["rollout/sync_probe_max_abs_diff"] <= 1e-4
    assert not psutil.pid_exists(engine_pid) or psutil.Process(engine_pid).status() == psutil.STATUS_ZOMBIE
    # the next sync over the new group works as usual, with no restart
    train_once(actor, rollout)
    again = rollout.sync_weights(actor, check=True)
    assert again["rollout/restarts"] == 0 and again["rollout/sync_probe_max_abs_diff"] <= 1e-4
