"""Weight sync from the FSDP2 actor (one gloo rank, in this process) into a bf16 hf engine (a thread), over the
real sync group (issue 16, defect 7b): shards are cast to the engine's dtype before they are gathered, the first
sync is full, later ones leave the frozen vision tower out, and a resume makes the next sync full again."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from easyr1.actor.batch import PolicyBatch
from easyr1.rollout.probe import probe_prompts

pytestmark = pytest.mark.filterwarnings("ignore:FSDP2-wrapped module")


@pytest.fixture(scope="module")
def pair(make_config, tiny_policy_dir: Path) -> Iterator:
    import torch.distributed as dist

    from easyr1.actor.settings import actor_settings
    from easyr1.actor.worker import ActorWorker
    from easyr1.rollout.hf_engine import HFRolloutEngine

    if dist.is_initialized():
        pytest.skip("a default process group already exists in this process")
    cfg = make_config(num_workers=1)
    cfg.worker.actor.model.freeze_vision_tower = True
    cfg.algorithm.use_kl_loss = False
    actor = ActorWorker(actor_settings(cfg, with_reference=False), rank=0, world_size=1)
    actor.setup(*actor.rendezvous())
    engine = HFRolloutEngine(str(tiny_policy_dir), dtype="bfloat16", threads=1)
    host, port = actor.start_weight_sync_server()
    joiner = threading.Thread(target=engine.init_weight_sync, args=(host, port, 1, 2, "gloo"))
    joiner.start()
    actor.join_weight_sync(host, port, 2, "gloo")
    joiner.join(timeout=60)
    yield actor, engine
    actor.shutdown()


def _sync(actor, engine, plan) -> tuple[int, int]:
    result: dict[str, int] = {}
    receiver = threading.Thread(target=lambda: result.update(received=engine.receive_weights(plan)))
    receiver.start()
    sent = actor.broadcast_weights(plan)
    receiver.join(timeout=60)
    return sent, result["received"]


def _visual(name: str) -> bool:
    return ".visual." in f".{name}"


def _assert_engine_holds(engine, expected: dict[str, torch.Tensor], keys) -> None:
    state = engine.model.state_dict()
    for key in keys:
        assert state[key].dtype == torch.bfloat16, key
        assert torch.equal(state[key], expected[key].to(torch.bfloat16)), key


def test_gathers_in_the_engine_dtype(pair, monkeypatch) -> None:
    """The all-gather moves bf16: each shard is cast before ``full_tensor``, not after."""
    from torch.distributed.tensor import DTensor

    from easyr1.actor.fsdp import iter_full_tensors

    actor, _ = pair
    gathered: list[torch.dtype] = []
    real = DTensor.full_tensor

    def spy(self, *args, **kwargs):
        gathered.append(self.dtype)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(DTensor, "full_tensor", spy)
    out = dict(iter_full_tensors(actor.model, dtype=torch.bfloat16))
    assert gathered and set(gathered) == {torch.bfloat16}
    assert all(v.dtype == torch.bfloat16 for v in out.values() if v.is_floating_point())
    reference = actor.full_state_dict()
    assert reference[next(iter(reference))].dtype == torch.float32  # the masters are fp32
    for key, value in out.items():
        assert torch.equal(value, reference[key].to(value.dtype)), key


def test_updates_leave_the_frozen_vision_tower_out(pair, tmp_path: Path) -> None:
    actor, engine = pair
    plan = actor.weight_plan(engine.weight_dtype(), 1 << 16)
    static = {t.name for t in plan.tensors if t.static}
    assert static and all(_visual(n) for n in static)  # the frozen vision tower, nothing else
    assert {t.dtype for t in plan.tensors if t.dtype != "int64"} == {"bfloat16"}

    # First sync: full.
    sent, received = _sync(actor, engine, plan)
    assert sent == received == plan.total_bytes
    state = {k: v.clone() for k, v in actor.full_state_dict().items()}  # one rank: may share the parameters
    _assert_engine_holds(engine, state, state)

    # An update changes the language model only; the next sync sends what can change.
    g = torch.Generator().manual_seed(4)
    prompts = probe_prompts(2)
    responses = [torch.randint(0, 800, (n,), generator=g).tolist() for n in (4, 8, 6, 3)]
    batch = PolicyBatch([prompts[i // 2] for i in range(4)], responses, advantages=torch.tensor([1.0, -1.0] * 2))
    batch = batch.with_fields(old_log_probs=actor.compute_log_probs(batch))
    actor.update_policy(batch, mini_batch_size=4)
    updated = actor.full_state_dict()
    assert any(not torch.equal(updated[k], state[k]) for k in updated if not _visual(k))
    marker = next(iter(sorted(static)))
    with torch.no_grad():  # proves the vision tower is not resent: a marked value survives the update
        engine.model.state_dict()[marker].fill_(0.5)
    sent, received = _sync(actor, engine, plan)
    static_bytes = sum(t.nbytes for t in plan.tensors if t.static)
    assert sent == received == plan.total_bytes - static_bytes == plan.sync_bytes(False)
    _assert_engine_holds(engine, updated, [k for k in updated if k not in static])
    assert bool((engine.model.state_dict()[marker] == 0.5).all())

    # After a resume the next sync is full again (the engines may hold other frozen weights).
    actor.save_checkpoint(str(tmp_path / "ckpt"))
    actor.load_checkpoint(str(tmp_path / "ckpt"))
    sent, received = _sync(actor, engine, plan)
    assert sent == received == plan.total_bytes
    _assert_engine_holds(engine, updated, updated)
    sent, _ = _sync(actor, engine, plan)
    assert sent == plan.sync_bytes(False)
