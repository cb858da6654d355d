"""GPU checks (``-m gpu``): skipped with a reason without CUDA; ``scripts/gpu_check.sh`` runs them on a lent GPU.

Everything is built offline with the builders ``easyr1 make-tiny`` uses (``EASYR1_GPU_TINY`` may name a
``make-tiny --out`` folder whose ``editor/`` is reused). Each test may record numbers with the ``record`` fixture;
they go to ``$EASYR1_GPU_CHECK_OUT`` (one JSON object per line) for the script's summary line.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

CUDA = torch.cuda.is_available()
NO_CUDA_REASON = "needs a CUDA GPU (torch.cuda.is_available() is False); run scripts/gpu_check.sh on a GPU machine"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CUDA:
        return
    skip = pytest.mark.skip(reason=NO_CUDA_REASON)
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """Overrides the CPU suite's single-thread default: GPU runs keep torch's own thread count."""
    yield


@pytest.fixture(scope="session")
def record() -> Callable[..., None]:
    """``record(name, **numbers)``: keep a measurement for the summary (and print it)."""
    out = os.environ.get("EASYR1_GPU_CHECK_OUT")

    def write(name: str, **values: object) -> None:
        line = json.dumps({"check": name, **values})
        print(line)
        if out:
            with open(out, "a") as fh:
                fh.write(line + "\n")

    return write


@pytest.fixture(scope="session")
def gpu_policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny policy with attention heads of 32 (vLLM's CUDA attention backends start at head size 32)."""
    from easyr1.models.tiny import TinyPolicySpec, build_tiny_policy

    spec = TinyPolicySpec(hidden_size=64, num_attention_heads=2, num_key_value_heads=1)
    return build_tiny_policy(tmp_path_factory.mktemp("gpu") / "policy", seed=0, spec=spec)


@pytest.fixture(scope="session")
def gpu_editor_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    made = os.environ.get("EASYR1_GPU_TINY")
    if made and (Path(made) / "editor" / "model_index.json").is_file():
        return Path(made) / "editor"
    from easyr1.models.tiny_editor import build_tiny_editor

    return build_tiny_editor(tmp_path_factory.mktemp("gpu") / "editor", seed=0)


NOSET_CUDA = "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"


@pytest.fixture(scope="module")
def gpu_ray() -> Iterator[None]:
    """A local Ray (no dashboard, no auth) where the actor and a vLLM engine can each ask for one GPU.

    With one physical GPU, Ray advertises two and leaves ``CUDA_VISIBLE_DEVICES`` alone, so both pools share GPU 0
    (vLLM keeps to its ``gpu_memory_utilization`` share); with two or more, each pool gets its own.
    """
    import ray

    if ray.is_initialized():
        ray.shutdown()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    gpus = torch.cuda.device_count()
    shared = gpus < 2
    if shared:
        os.environ[NOSET_CUDA] = "1"
    temp = tempfile.mkdtemp(prefix="er1gpu", dir="/tmp")
    ray.init(
        num_cpus=min(8, os.cpu_count() or 2),
        num_gpus=2 if shared else gpus,
        include_dashboard=False,
        _temp_dir=temp,
        log_to_driver=True,
    )
    yield
    ray.shutdown()
    if shared:
        os.environ.pop(NOSET_CUDA, None)
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="session")
def gpu_config(gpu_policy_dir: Path):
    """``gpu_config(actor_gpus=1.0, rollout_gpus=0.0, **actor_fields)``: the tiny policy trained in bf16 FSDP2 on
    the GPU (mixed precision, gradient checkpointing), vLLM on the same GPU when ``rollout_gpus`` > 0."""
    from easyr1.config import EasyR1Config

    def build(actor_gpus: float = 1.0, rollout_gpus: float = 0.0, **fsdp_fields: object) -> EasyR1Config:
        cfg = EasyR1Config()
        actor = cfg.worker.actor
        actor.model.model_path = str(gpu_policy_dir)
        actor.model.dtype = "bfloat16"
        actor.model.enable_gradient_checkpointing = True
        actor.fsdp.mixed_precision = True
        for key, value in fsdp_fields.items():
            setattr(actor.fsdp, key, value)
        actor.num_workers = 1
        actor.global_batch_size = 2
        actor.micro_batch_size_per_device_for_update = 2
        actor.micro_batch_size_per_device_for_experience = 4
        actor.optim.lr = 1e-2
        actor.optim.weight_decay = 0.0
        cfg.worker.rollout.n = 2
        cfg.worker.rollout.response_length = 32
        cfg.data.max_response_length = 32
        cfg.data.max_prompt_length = 512
        cfg.data.rollout_batch_size = 2
        cfg.cluster.actor.num_gpus_per_worker = actor_gpus
        cfg.cluster.actor.num_cpus_per_worker = 1
        if rollout_gpus > 0:
            rollout = cfg.worker.rollout
            rollout.name = "vllm"
            rollout.gpu_memory_utilization = 0.3
            rollout.enforce_eager = True
            rollout.max_num_batched_tokens = 2048
            rollout.sync_probe_tolerance = 0.1  # bf16 engine against the bf16-computing actor
            cfg.cluster.rollout.num_gpus_per_worker = rollout_gpus
            cfg.cluster.rollout.num_cpus_per_worker = 1
        return cfg

    return build
