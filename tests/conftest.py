"""Shared test set-up: paths to the repository and to ../shared data files."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("EASYR1_SHARED_DIR", REPO_ROOT.parent / "shared"))

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

_EXIT_STATUS = pytest.StashKey[int]()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED_DIR.is_dir():
        pytest.skip(f"shared data folder {SHARED_DIR} is absent (a clone outside the workplace)")
    return SHARED_DIR


@pytest.fixture(autouse=True, scope="module")
def _no_ray_leaks_between_modules():
    """Each test module starts without a Ray and leaves none behind (a module's Ray would otherwise be reused
    by the next module with the wrong resources)."""
    yield
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """End the test process as soon as pytest is done with it, with pytest's own exit status.

    One test process starts and stops a local Ray dozens of times; native threads those sessions leave behind
    (Ray's core worker, gRPC) have crashed the interpreter's final teardown with SIGSEGV after a complete test
    summary (CI, exit 139), which turns a finished run into a failed one. Nothing of the tests runs after this
    point, so the process leaves without the native teardown. ``EASYR1_TEST_NATIVE_EXIT=1`` keeps the normal exit
    (to chase such a crash with ``python -X faulthandler -m pytest``)."""
    if os.environ.get("EASYR1_TEST_NATIVE_EXIT") == "1" or _EXIT_STATUS not in config.stash:
        return
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(config.stash[_EXIT_STATUS])


# -- shared by tests/models, tests/actor, tests/rollout: the tiny policy, a local Ray, small configs -----------
@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    # Tiny-model ops are microseconds; on a shared 2-core box extra OpenMP threads only contend.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from easyr1.models.tiny import build_tiny_policy

    return build_tiny_policy(tmp_path_factory.mktemp("tiny") / "policy", seed=0)


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    """A local Ray per test module (2 CPUs, no dashboard, no auth), so no module inherits another's Ray."""
    import ray

    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    temp = tempfile.mkdtemp(prefix="er1ray", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False)
    yield
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="session")
def make_config(tiny_policy_dir: Path):
    """Factory of a small CPU config around the tiny policy: ``make_config(num_workers=2, lr=1e-2, ...)``."""
    from easyr1.config import EasyR1Config

    def build(num_workers: int = 1, lr: float = 1e-2, n: int = 4, **actor_fields):
        cfg = EasyR1Config()
        cfg.worker.actor.model.model_path = str(tiny_policy_dir)
        cfg.worker.actor.model.enable_gradient_checkpointing = False
        cfg.worker.actor.num_workers = num_workers
        cfg.worker.actor.global_batch_size = 2
        cfg.worker.actor.micro_batch_size_per_device_for_update = 2
        cfg.worker.actor.micro_batch_size_per_device_for_experience = 4
        cfg.worker.actor.optim.lr = lr
        cfg.worker.actor.optim.weight_decay = 0.0
        for key, value in actor_fields.items():
            setattr(cfg.worker.actor, key, value)
        cfg.worker.rollout.n = n
        cfg.worker.rollout.response_length = 32
        cfg.data.max_response_length = 32
        cfg.data.rollout_batch_size = 2
        # Fractional CPUs: two actor ranks plus engines fit a 2-CPU local Ray.
        cfg.cluster.actor.num_cpus_per_worker = 0.5
        cfg.cluster.rollout.num_cpus_per_worker = 0.5
        return cfg

    return build
