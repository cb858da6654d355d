"""A SIGKILLed rollout engine: the pool replaces it, gives it the latest weights and generates its share again with
the same seeds (same outputs as an undisturbed call); the collective group is rebuilt at the next sync; past the
restart limit, one clear error and no hang."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

import psutil
import pytest
import torch
from rollout_testkit import train_once

from easyr1.core.types import SamplingParams
from easyr1.pools import WorkerLost
from easyr1.rollout.probe import probe_prompts

pytestmark = pytest.mark.slow

SAMPLING = SamplingParams(n=2, max_tokens=24, seed=11)


@pytest.fixture(scope="module")
def pools(ray_session, make_config):
    from easyr1.actor.pool import ActorPool
    from easyr1.rollout.pool import RolloutPool

    cfg = make_config(num_workers=1, n=2)
    cfg.worker.rollout.num_engines = 2
    cfg.worker.rollout.weight_sync_bucket_mb = 1
    cfg.worker.rollout.generation_batch_size = 2  # several chunks per engine call: a longer call to kill
    cfg.worker.rollout.max_restarts = 2
    actor = ActorPool(cfg)
    rollout = RolloutPool(cfg)
    yield actor, rollout
    rollout.shutdown()
    actor.shutdown()


def engine_pid(engine) -> int:
    import ray

    return ray.get(engine.__ray_call__.remote(lambda self: os.getpid()), timeout=60)


def kill_when_generating(pid: int, timeout_s: float = 60.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            if any("generate" in part for part in psutil.Process(pid).cmdline()):
                os.kill(pid, signal.SIGKILL)
                return True
        except psutil.NoSuchProcess:
            return False
        time.sleep(0.002)
    return False


def test_sigkilled_engine_is_replaced_with_the_synced_weights_and_outputs_are_unchanged(pools) -> None:
    actor, rollout = pools
    train_once(actor, rollout)
    rollout.sync_weights(actor, check=False)  # engines now differ from the start weights a fresh engine loads
    assert rollout.probe_difference(actor) <= 1e-4
    prompts = probe_prompts(4)
    undisturbed = rollout.generate(prompts, SAMPLING)
    rollout.drain_metrics()
    pid = engine_pid(rollout.engines[1])
    killed: list[bool] = []
    killer = threading.Thread(target=lambda: killed.append(kill_when_generating(pid)))
    killer.start()
    outputs = rollout.generate(prompts, SAMPLING)
    killer.join()
    assert killed == [True], "the engine was not caught mid-call"
    assert rollout.restarts == [0, 1] and rollout.drain_metrics()["rollout/restarts"] == 1
    assert engine_pid(rollout.engines[1]) != pid
    assert [(o.prompt_id, o.sample_index, o.extra["engine"]) for o in outputs] == [
        (o.prompt_id, o.sample_index, o.extra["engine"]) for o in undisturbed
    ]
    for before, after in zip(undisturbed, outputs, strict=True):
        assert after.token_ids == before.token_ids
        assert torch.allclose(torch.tensor(after.logprobs), torch.tensor(before.logprobs), atol=1e-5)
    # the restarted engine holds the synced (trained) weights: its probe log-probs equal the actor's
    assert rollout.probe_difference(actor) <= 1e-4
    # the next sync rebuilds the collective group with the fresh engine in it
    train_once(actor, rollout)
    assert rollout.probe_difference(actor) > 1e-3
    metrics = rollout.sync_weights(actor, check=True)
    assert metrics["rollout/sync_probe_max_abs_diff"] <= 1e-4 and metrics["rollout/restarts"] == 0
    assert metrics["rollout/sync_bytes"] > 0


def test_hung_engine_past_its_call_deadline_is_replaced(pools) -> None:
    actor, rollout = pools
    prompts = probe_prompts(4)
    undisturbed = rollout.generate(prompts, SAMPLING)
    pid = engine_pid(rollout.engines[0])
    rollout.cfg.worker.rollout.call_timeout_s = 5.0
    os.kill(pid, signal.SIGSTOP)  # alive but silent: only the deadline can tell
    try:
        started = time.monotonic()
        outputs = rollout.generate(prompts, SAMPLING)
        assert time.monotonic() - started < 60
    finally:
        rollout.cfg.worker.rollout.call_timeout_s = 1800.0
        with contextlib.suppress(psutil.Error):  # the pool killed it; never leave a stopped engine behind
            process = psutil.Process(pid)
            if any("HFRolloutEngine" in part for part in process.cmdline()):
                process.kill()
    assert rollout.restarts == [1, 1] and rollout.drain_metrics()["rollout/restarts"] == 1
    assert [o.token_ids for o in outputs] == [o.token_ids for o in undisturbed]
    assert rollout.probe_difference(actor) <= 1e-4


def test_engine_dead_at_sync_time_is_replaced_and_synced(pools) -> None:
    actor, rollout = pools
    train_once(actor, rollout)  # new actor weights, not yet in the engines
    os.kill(engine_pid(rollout.engines[1]), signal.SIGKILL)
    rollout.cfg.worker.rollout.sync_probe_tolerance = 1e-4
    try:
        metrics = rollout.sync_weights(actor, check=True)  # replaced before the broadcast, then synced with the rest
    finally:
        rollout.cfg.worker.rollout.sync_probe_tolerance = None
    assert metrics["rollout/restarts"] == 1 and rollout.restarts == [1, 2]
    assert metrics["rollout/sync_probe_max_abs_diff"] <= 1e-4 and metrics["rollout/sync_bytes"] > 0


def test_restart_limit_exceeded_is_one_clear_error_without_a_hang(pools) -> None:
    _actor, rollout = pools  # engine 1 already used its max_restarts=2
    os.kill(engine_pid(rollout.engines[1]), signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(
        WorkerLost,
        match=r"rollout pool: member 1 lost \(engine 1: ActorDiedError: .*restart limit reached after 2 restart\(s\) "
        r"\(worker.rollout.max_restarts=2\)\)",
    ):
        rollout.generate(probe_prompts(4), SAMPLING)
    assert time.monotonic() - started < 60
