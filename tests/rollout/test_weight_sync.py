"""The weight-sync group: plans, bucket packing, and a real gloo broadcast between threads."""

from __future__ import annotations

import threading

import torch

from easyr1.rollout.weight_sync import TensorSpec, WeightSyncGroup, make_plan, pack_bucket, unpack_bucket


def _specs(state: dict[str, torch.Tensor], dtype: str = "float32") -> list[TensorSpec]:
    return [
        TensorSpec(k, tuple(v.shape), dtype if v.dtype.is_floating_point else str(v.dtype).removeprefix("torch."))
        for k, v in state.items()
    ]


def test_plan_respects_bucket_size_and_dtype() -> None:
    specs = [
        TensorSpec("a", (10,), "float32"),  # 40 B
        TensorSpec("b", (10,), "float32"),
        TensorSpec("c", (100,), "float32"),  # 400 B, larger than a bucket: alone
        TensorSpec("d", (2,), "int64"),  # other dtype: new bucket
        TensorSpec("e", (5,), "float32"),
    ]
    plan = make_plan(specs, bucket_bytes=100)
    assert plan.buckets == ((0, 1), (2,), (3,), (4,))
    assert plan.total_bytes == 40 + 40 + 400 + 16 + 20


def test_pack_unpack_round_trip() -> None:
    tensors = [torch.randn(3, 4), torch.randn(5), torch.randn(2, 2, 2)]
    specs = [TensorSpec(f"t{i}", tuple(t.shape), "float32") for i, t in enumerate(tensors)]
    flat = pack_bucket(tensors, torch.float32, "cpu")
    for (name, value), spec, original in zip(unpack_bucket(flat, specs), specs, tensors, strict=True):
        assert name == spec.name
        torch.testing.assert_close(value, original, rtol=0, atol=0)


def test_gloo_broadcast_between_two_members() -> None:
    torch.manual_seed(0)
    state = {"w": torch.randn(64, 32), "b": torch.randn(32), "steps": torch.arange(4), "v": torch.randn(7, 3)}
    plan = make_plan(_specs(state, "bfloat16"), bucket_bytes=2048)
    store, host, port = WeightSyncGroup.start_server("127.0.0.1", timeout_s=30)
    received: dict[str, torch.Tensor] = {}
    errors: list[BaseException] = []

    def receiver() -> None:
        try:
            group = WeightSyncGroup.join(host, port, 1, 2, "gloo", timeout_s=30)
            group.receive(plan, lambda items: received.update({k: v.clone() for k, v in items}))
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    thread = threading.Thread(target=receiver)
    thread.start()
    sender = WeightSyncGroup.join(host, port, 0, 2, "gloo", store=store, timeout_s=30)
    sent = sender.send(plan, iter(state.items()))
    thread.join(timeout=30)
    assert not errors, errors
    assert sent == plan.total_bytes
    assert set(received) == set(state)
    assert received["steps"].dtype == torch.int64 and received["steps"].tolist() == [0, 1, 2, 3]
    assert received["w"].dtype == torch.bfloat16
    torch.testing.assert_close(received["w"].float(), state["w"].bfloat16().float(), rtol=0, atol=0)
