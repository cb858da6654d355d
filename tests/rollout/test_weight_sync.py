"""The weight-sync group: plans, bucket packing, and a real gloo broadcast between threads."""

from __future__ import annotations

import threading

import torch

from easyr1.transfer.weight_sync import TensorSpec, WeightSyncGroup, make_plan, pack_bucket, unpack_bucket


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

    from easyr1.transfer.weight_sync import WeightPlan

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
    from easyr1.transfer.weight_sync import deserialize_state, serialize_state

    torch.manual_seed(0)
    state = {"w": torch.randn(64, 32), "b": torch.randn(32), "steps": torch.arange(4)}
    blobs = list(serialize_state(state, torch.bfloat16, bucket_bytes=2048))
    assert len(blobs) == 3 and all(isinstance(b, bytes) for b in blobs)
    back = dict(item for blob in blobs for item in deserialize_state(blob))
    assert back["w"].dtype == torch.bfloat16 and torch.equal(back["w"], state["w"].bfloat16())
    assert torch.equal(back["steps"], state["steps"])


def _static_state() -> tuple[dict[str, torch.Tensor], set[str]]:
    torch.manual_seed(1)
    state = {
        "visual.w": torch.randn(16, 8),
        "visual.b": torch.randn(8),
        "lm.w": torch.randn(32, 8),
        "lm.b": torch.randn(32),
        "lm.steps": torch.arange(3),
    }
    return state, {"visual.w", "visual.b"}


def _static_plan(state: dict[str, torch.Tensor], static: set[str]):
    specs = [
        TensorSpec(k, tuple(v.shape), "bfloat16" if v.is_floating_point() else "int64", static=k in static)
        for k, v in state.items()
    ]
    return make_plan(specs, bucket_bytes=1 << 20)


def test_plan_keeps_static_tensors_in_buckets_of_their_own() -> None:
    from easyr1.transfer.weight_sync import WeightPlan

    state, static = _static_state()
    plan = _static_plan(state, static)
    assert plan.buckets == ((0, 1), (2, 3), (4,))  # one bucket would hold everything but the static flag splits
    assert [plan.is_static(b) for b in range(3)] == [True, False, False]
    assert plan.sent_names(True) == list(state)
    assert plan.sent_names(False) == ["lm.w", "lm.b", "lm.steps"]
    static_bytes = (16 * 8 + 8) * 2
    assert plan.sync_bytes(True) == plan.total_bytes and plan.sync_bytes(False) == plan.total_bytes - static_bytes
    assert WeightPlan.from_wire(plan.to_wire()) == plan
    # A plan on the wire without the flag (three fields per tensor) is sent in full every time.
    old = {"tensors": [entry[:3] for entry in plan.to_wire()["tensors"]], "buckets": plan.to_wire()["buckets"]}
    assert not any(t.static for t in WeightPlan.from_wire(old).tensors)


def test_updates_leave_static_buckets_out_and_replay_them_on_request() -> None:
    """Sender, a receiver that replays static buckets (vLLM's worker) and one that does not (the hf engine):
    a full sync, then an update with new non-static values."""
    state, static = _static_state()
    plan = _static_plan(state, static)
    store, host, port = WeightSyncGroup.start_server("127.0.0.1", timeout_s=30)
    got: dict[str, list[dict[str, torch.Tensor]]] = {"replay": [], "plain": []}
    errors: list[BaseException] = []
    headers: list[bool | None] = []

    def receiver(rank: int, kind: str) -> None:
        try:
            group = WeightSyncGroup.join(host, port, rank, 3, "gloo", timeout_s=30)
            for _ in range(2):
                if kind == "replay":
                    items = [item for bucket in group.receive_buckets(plan) for item in bucket]
                    got[kind].append({k: v.clone() for k, v in items})
                else:
                    received: dict[str, torch.Tensor] = {}
                    group.receive(plan, lambda items, r=received: r.update({k: v.clone() for k, v in items}))
                    got[kind].append(received)
                    headers.append(group.last_full)  # what vLLM's worker checks its byte count against
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=receiver, args=(r, k)) for r, k in ((1, "replay"), (2, "plain"))]
    for t in threads:
        t.start()
    sender = WeightSyncGroup.join(host, port, 0, 3, "gloo", store=store, timeout_s=30)
    assert not sender.static_sent
    full_bytes = sender.send(plan, iter(state.items()), full=True)
    assert sender.static_sent
    updated = {k: (v + 1 if k not in static else v) for k, v in state.items()}
    update_bytes = sender.send(plan, ((k, updated[k]) for k in plan.sent_names(False)), full=False)
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert full_bytes == plan.total_bytes and update_bytes == plan.sync_bytes(False) < full_bytes
    assert [list(r) for r in got["plain"]] == [list(state), ["lm.w", "lm.b", "lm.steps"]]
    assert headers == [True, False]
    assert [list(r) for r in got["replay"]] == [list(state), list(state)]  # in plan order
    for k, v in got["replay"][1].items():
        assert torch.equal(v, updated[k].to(v.dtype)), k
    for k, v in got["plain"][1].items():
        assert torch.equal(v, updated[k].to(v.dtype)), k


def test_an_update_without_a_full_sync_to_replay_fails_without_blocking_the_sender() -> None:
    import pytest

    state, static = _static_state()
    plan = _static_plan(state, static)
    store, host, port = WeightSyncGroup.start_server("127.0.0.1", timeout_s=30)
    errors: list[BaseException] = []

    def receiver() -> None:
        group = WeightSyncGroup.join(host, port, 1, 2, "gloo", timeout_s=30)
        try:
            for _ in group.receive_buckets(plan):
                pass
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=receiver)
    thread.start()
    sender = WeightSyncGroup.join(host, port, 0, 2, "gloo", store=store, timeout_s=30)
    sender.send(plan, ((k, state[k]) for k in plan.sent_names(False)), full=False)  # returns: nothing blocks
    thread.join(timeout=30)
    assert len(errors) == 1
    with pytest.raises(RuntimeError, match="no full sync"):
        raise errors[0]
