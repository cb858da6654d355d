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


def test_plan_wire_form_is_plain_lists_and_rebuilds_the_plan() -> None:
    import json

    import pytest

    from easyr1.rollout.weight_sync import WeightPlan

    plan = make_plan([TensorSpec("a", (2, 3), "bfloat16"), TensorSpec("n", (4,), "int64")], bucket_bytes=8)
    wire = plan.to_wire()
    assert json.loads(json.dumps(wire)) == wire  # only lists, strings and ints: survives any untyped codec
    assert WeightPlan.from_wire(wire) == plan
    assert WeightPlan.from_wire(plan) is plan
    with pytest.raises(ValueError, match="cover"):
        WeightPlan.from_wire({"tensors": wire["tensors"], "buckets": [[0]]})
    with pytest.raises(ValueError, match="malformed"):
        WeightPlan.from_wire({"tensors": wire["tensors"]})
    with pytest.raises(ValueError, match="unsupported dtype"):
        WeightPlan.from_wire({"tensors": [["a", [1], "complex64"]], "buckets": [[0]]})


def test_serialized_state_round_trips_in_buckets() -> None:
    from easyr1.rollout.weight_sync import deserialize_state, serialize_state

    torch.manual_seed(0)
    state = {"w": torch.randn(64, 32), "b": torch.randn(32), "steps": torch.arange(4)}
    blobs = list(serialize_state(state, torch.bfloat16, bucket_bytes=2048))
    assert len(blobs) == 3 and all(isinstance(b, bytes) for b in blobs)
    back = dict(item for blob in blobs for item in deserialize_state(blob))
    assert back["w"].dtype == torch.bfloat16 and torch.equal(back["w"], state["w"].bfloat16())
    assert torch.equal(back["steps"], state["steps"])
