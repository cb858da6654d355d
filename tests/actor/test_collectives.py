"""The actor world's collective rule (issue 16, defect 1): on CUDA the world is ``cpu:gloo,cuda:nccl`` and every
tensor the actor hands to a collective lives on the worker's device.

A CPU machine cannot build an NCCL world, so the device rule is checked with a spy: the worker's device is set to
``meta`` (any device other than CPU would do), the spy records the device of the tensor each collective receives
and stops the call. Before the fix these tensors were built on the CPU whatever the worker's device.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist

from easyr1.actor.metrics import MetricSums

META = torch.device("meta")


class _Seen(Exception):
    """Raised by the spy once it has recorded a collective's tensor."""


@pytest.fixture
def spy(monkeypatch) -> list[tuple[str, torch.device]]:
    seen: list[tuple[str, torch.device]] = []

    def record(kind: str):
        def collective(tensor, *args, **kwargs):
            seen.append((kind, tensor.device))
            raise _Seen

        return collective

    for kind in ("all_reduce", "broadcast", "all_gather_into_tensor", "reduce_scatter_tensor"):
        monkeypatch.setattr(dist, kind, record(kind))
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    return seen


def _fake_worker() -> SimpleNamespace:
    return SimpleNamespace(world_size=2, device="meta", collective_device=META)


def test_cuda_world_has_a_cpu_backend_too() -> None:
    from torch.distributed.distributed_c10d import Backend, BackendConfig

    from easyr1.actor.fsdp import process_group_backend

    assert process_group_backend("cuda") == "cpu:gloo,cuda:nccl"
    assert process_group_backend("cuda:0") == "cpu:gloo,cuda:nccl"
    assert process_group_backend("cpu") == "gloo"
    # torch parses it into one backend per device type (CPU tensors → gloo, CUDA tensors → NCCL).
    assert BackendConfig(Backend(process_group_backend("cuda"))).get_device_backend_map() == {
        "cpu": "gloo",
        "cuda": "nccl",
    }


def test_micro_batch_count_is_reduced_on_the_worker_device(spy) -> None:
    from easyr1.actor.worker import ActorWorker

    with pytest.raises(_Seen):
        ActorWorker._max_over_ranks(_fake_worker(), 3)
    assert spy == [("all_reduce", META)]


def test_loss_normalisers_are_reduced_on_the_worker_device(spy) -> None:
    from easyr1.actor.update import _all_reduce_sum

    local = torch.tensor(7.0, dtype=torch.float64)  # agg_normaliser's sums are built from CPU masks
    with pytest.raises(_Seen):
        _all_reduce_sum(local, _fake_worker())
    assert spy == [("all_reduce", META)]


@pytest.mark.parametrize("kind", ["mean", "max"])
def test_metric_sums_are_reduced_on_the_worker_device(spy, kind) -> None:
    sums = MetricSums()
    if kind == "mean":
        sums.add_mean("a", 1.0, 2.0)
    else:
        sums.add_max("m", 3.0)
    with pytest.raises(_Seen):
        sums.reduce(META)
    assert spy == [("all_reduce", META)]


def test_metric_sums_on_one_rank_need_no_collective() -> None:
    sums = MetricSums()
    sums.add_mean("a", 1.0, 2.0)
    sums.add_max("m", 3.0)
    assert sums.reduce("cpu") == {"a": 1.0, "m": 3.0}
