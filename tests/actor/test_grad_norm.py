"""FSDP2-aware gradient clipping (issue 16, defect 4): two gloo ranks with sharded (uneven) gradients, with and
without FSDP's CPU offload policy, equal ``torch.nn.utils.clip_grad_norm_`` on an unsharded copy; the partial
norms reach the collective on the worker's device."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD = 2


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    # 7 and 3 output rows over 2 ranks: uneven shards; the last bias is frozen (no gradient).
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    model[2].bias.requires_grad_(False)
    return model


def _backward(model: torch.nn.Module, scale: float) -> None:
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(1))
    (scale * model(x).pow(2).sum()).backward()


class _Seen(Exception):
    pass


def _rank(rank: int, out: str, offload: bool) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

    from easyr1.actor.grad_norm import clip_grad_norm_

    torch.set_num_threads(1)
    # A file rendezvous: no store server living in rank 0 that could exit while rank 1 still tears down (a TCP
    # store's host leaving first aborts the other rank with "terminate called without an active exception").
    dist.init_process_group("gloo", init_method=f"file://{Path(out, 'rendezvous')}", rank=rank, world_size=WORLD)
    try:
        results: dict[str, object] = {}
        mesh = init_device_mesh("cpu", (WORLD,))
        policy = CPUOffloadPolicy(pin_memory=False) if offload else OffloadPolicy()
        for norm_type in (2.0, math.inf):
            for max_norm in (1e3, 0.5):  # no clipping, clipping
                sharded, ref = _model(), _model()
                fully_shard(sharded[0], mesh=mesh, offload_policy=policy)
                fully_shard(sharded, mesh=mesh, offload_policy=policy)
                # Every rank sees the same batch, so FSDP's averaged gradient equals the unsharded model's.
                _backward(sharded, 3.0)
                _backward(ref, 3.0)
                params = [p for p in sharded.parameters() if p.requires_grad]
                assert all(p.grad.device.type == "cpu" for p in params)
                total = clip_grad_norm_(params, max_norm, device="cpu", norm_type=norm_type)
                expected = torch.nn.utils.clip_grad_norm_(
                    [p for p in ref.parameters() if p.requires_grad], max_norm, norm_type=norm_type
                )
                diffs = [
                    float((p.grad.full_tensor() - q.grad).abs().max())
                    for p, q in zip(params, [q for q in ref.parameters() if q.requires_grad], strict=True)
                ]
                results[f"{norm_type}/{max_norm}"] = {
                    "total": total,
                    "expected": float(expected),
                    "grad_diff": max(diffs),
                }
        # Non-finite gradients: the norm says so and the gradients are left alone.
        sharded = _model()
        fully_shard(sharded, mesh=mesh, offload_policy=policy)
        _backward(sharded, 3.0)
        params = [p for p in sharded.parameters() if p.requires_grad]
        if rank == 1:
            params[0].grad.to_local().view(-1)[0] = float("inf")
        before = [p.grad.to_local().clone() for p in params]
        total = clip_grad_norm_(params, 0.5, device="cpu")
        results["nonfinite"] = {
            "total": total,
            "untouched": all(torch.equal(b, p.grad.to_local()) for b, p in zip(before, params, strict=True)),
        }
        # The device rule: the partial norm is handed to the collective on the worker's device ("meta" here, as a
        # stand-in for a GPU next to CPU-offloaded shards).
        seen = []
        real = dist.all_reduce

        def spy(tensor, *args, **kwargs):
            seen.append(str(tensor.device))
            raise _Seen

        dist.all_reduce = spy
        try:
            clip_grad_norm_(params, 0.5, device="meta")
        except _Seen:
            pass
        finally:
            dist.all_reduce = real
        results["collective_devices"] = seen
        Path(out, f"rank{rank}.json").write_text(json.dumps(results))
        dist.barrier()  # neither rank tears gloo down while the other may still be in a collective
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("offload", [False, True], ids=["resident", "cpu_offload"])
def test_sharded_clip_equals_unsharded_clip(tmp_path: Path, offload: bool) -> None:
    mp.start_processes(_rank, args=(str(tmp_path), offload), nprocs=WORLD, start_method="spawn")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    for key in ("2.0/1000.0", "2.0/0.5", "inf/1000.0", "inf/0.5"):
        for result in ranks:
            entry = result[key]
            assert entry["total"] == pytest.approx(entry["expected"], rel=1e-6), key
            assert entry["grad_diff"] <= 1e-6, key
        assert ranks[0][key]["total"] == ranks[1][key]["total"]
    assert ranks[0]["2.0/0.5"]["expected"] > 0.5  # the clipping case really clips
    for result in ranks:
        assert math.isinf(result["nonfinite"]["total"]) and result["nonfinite"]["untouched"]
        assert result["collective_devices"] == ["meta"]


def test_unsharded_gradients_are_not_summed_over_ranks() -> None:
    """Plain (replicated) tensors need no collective: the result is torch's."""
    from easyr1.actor.grad_norm import clip_grad_norm_

    model, ref = _model(), copy.deepcopy(_model())
    _backward(model, 3.0)
    _backward(ref, 3.0)
    total = clip_grad_norm_(list(model.parameters()), 0.5, device="cpu")
    expected = torch.nn.utils.clip_grad_norm_(list(ref.parameters()), 0.5)
    assert total == pytest.approx(float(expected), rel=1e-6)
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=1e-7)
