"""A hung-but-alive actor rank (SIGSTOP: the process is there, Ray sees nothing wrong, the call never returns) is
bounded by ``worker.actor.call_timeout_s``: the pool kills the ranks still in the call, raises
``ActorCallTimeout`` naming them and the call, counts ``actor/call_timeouts``, and the driver's ``ActorRecovery``
rebuilds the world and restores it from the newest checkpoint — the restored pool gives the checkpoint's
log-probs again."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
import torch

from easyr1.actor.batch import PolicyBatch
from easyr1.rollout.probe import probe_prompts
from easyr1.trainer.checkpoint import DriverState

pytestmark = pytest.mark.slow

DEADLINE_S = 4.0


def batch() -> PolicyBatch:
    g = torch.Generator().manual_seed(0)
    prompts = probe_prompts(2)
    responses = [torch.randint(0, 800, (n,), generator=g).tolist() for n in (5, 7, 4, 6)]
    return PolicyBatch([prompts[i // 2] for i in range(4)], responses)


def worker_pid(worker) -> int:
    import ray

    return ray.get(worker.__ray_call__.remote(lambda self: os.getpid()), timeout=60)


class Trainer:
    """What ``ActorRecovery`` needs of the driver, around a real actor pool; ``restore`` loads the checkpoint."""

    def __init__(self, pool, checkpoint: Path):
        self.c = SimpleNamespace(actor=pool, rollout=None)
        self.cfg = SimpleNamespace(trainer=SimpleNamespace(save_freq=1))
        self.step = 1
        self.checkpoint = checkpoint
        self.restored: list[int] = []

    def newest_resumable(self) -> Path | None:
        return self.checkpoint

    def restore(self, path: Path, state: DriverState) -> None:
        self.c.actor.load_checkpoint(str(path))
        self.step = state.step
        self.restored.append(state.step)


@pytest.fixture(scope="module")
def pool(ray_session, make_config):
    from easyr1.actor.pool import ActorPool

    pool = ActorPool(make_config(num_workers=2))
    yield pool
    pool.shutdown()


def test_a_hung_rank_misses_the_call_deadline_and_the_pool_is_restored(pool, tmp_path: Path, caplog) -> None:
    from easyr1.actor.pool import ActorCallTimeout
    from easyr1.trainer.recovery import ActorRecovery

    assert pool.cfg.worker.actor.call_timeout_s == 3600.0  # the default: every call has a deadline
    data = batch()
    # a checkpoint of trained weights: the restore must bring these back, not the start weights
    start = pool.compute_log_probs(data)
    advantages = torch.tensor([1.0, -1.0, 1.0, -1.0])
    ref = pool.compute_ref_log_probs(data)
    pool.update_policy(data.with_fields(old_log_probs=start, ref_log_probs=ref, advantages=advantages))
    expected = pool.compute_log_probs(data)
    assert (expected - start).abs().max() > 1e-4
    folder = tmp_path / "global_step_1"
    pool.save_checkpoint(str(folder))
    (folder / "driver_state.json").write_text(json.dumps(DriverState(step=1).to_json()))
    trainer = Trainer(pool, folder)
    trainer.step = 2
    recovery = ActorRecovery(trainer, ping_timeout_s=10.0)
    recovery.metrics()  # zero the counters

    errors: list[BaseException] = []

    def step() -> dict:
        pool.cfg.worker.actor.call_timeout_s = DEADLINE_S
        try:
            return {"log_probs": pool.compute_log_probs(data)}
        except Exception as exc:
            errors.append(exc)
            raise
        finally:  # the restart's model set-up gets the default deadline
            pool.cfg.worker.actor.call_timeout_s = 3600.0

    pid = worker_pid(pool.workers[1])
    os.kill(pid, signal.SIGSTOP)  # alive but silent: only the deadline can tell
    try:
        started = time.monotonic()
        results: list = []
        with caplog.at_level("WARNING"):
            runner = threading.Thread(target=lambda: results.append(recovery.run(step)), daemon=True)
            runner.start()
            runner.join(DEADLINE_S + 240)  # without a deadline the call never returns
        elapsed = time.monotonic() - started
        assert not runner.is_alive(), f"the call on the hung rank did not end within {elapsed:.0f}s"
        assert results == [None]  # rewound to the checkpoint
    finally:
        with contextlib.suppress(psutil.Error):  # never leave a stopped worker behind
            if psutil.Process(pid).status() == psutil.STATUS_STOPPED:
                os.kill(pid, signal.SIGKILL)
    ((error,),) = [errors]
    assert isinstance(error, ActorCallTimeout) and error.call == "compute_log_probs" and 1 in error.ranks
    assert re.search(
        r"rank\(s\) \[(0, )?1\] did not finish compute_log_probs within worker.actor.call_timeout_s=4s", str(error)
    ), error
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, "hung rank not killed"
    log = caplog.text
    assert "still in compute_log_probs after worker.actor.call_timeout_s=4s; killing them" in log, log
    assert "hung in compute_log_probs: no answer within worker.actor.call_timeout_s=4s (killed)" in log, log
    assert trainer.restored == [1] and trainer.step == 1
    assert recovery.metrics() == {"actor/restarts": 1.0, "actor/call_timeouts": 1.0}
    assert worker_pid(pool.workers[1]) != pid
    torch.testing.assert_close(pool.compute_log_probs(data), expected, rtol=0, atol=1e-6)
    print(f"deadline {DEADLINE_S}s: hung call ended and pool restored in {elapsed:.1f}s")
