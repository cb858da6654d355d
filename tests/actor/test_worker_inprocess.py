"""One actor rank in this process (gloo world of 1, no Ray): GSPO / Dr.GRPO aggregation, entropy bonus, and
gradient accumulation over micro-batches equal to one big batch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from easyr1.actor.batch import PolicyBatch
from easyr1.rollout.probe import probe_prompts

pytestmark = pytest.mark.filterwarnings("ignore:FSDP2-wrapped module")


@pytest.fixture(scope="module")
def worker(make_config) -> Iterator:
    import torch.distributed as dist

    from easyr1.actor.settings import actor_settings
    from easyr1.actor.worker import ActorWorker

    if dist.is_initialized():
        pytest.skip("a default process group already exists in this process")
    cfg = make_config(num_workers=1, loss_type="gspo", entropy_coeff=0.01, loss_agg_mode="seq-mean-token-sum-norm")
    cfg.worker.actor.clip_ratio_low = cfg.worker.actor.clip_ratio_high = 0.2
    w = ActorWorker(actor_settings(cfg), rank=0, world_size=1)
    w.setup(*w.rendezvous())
    yield w
    w.shutdown()


def _batch(worker) -> PolicyBatch:
    g = torch.Generator().manual_seed(4)
    prompts = probe_prompts(2)
    responses = [torch.randint(0, 800, (n,), generator=g).tolist() for n in (4, 8, 6, 3)]
    batch = PolicyBatch([prompts[i // 2] for i in range(4)], responses, advantages=torch.tensor([1.0, -1.0, 1.0, -1.0]))
    return batch.with_fields(
        old_log_probs=worker.compute_log_probs(batch), ref_log_probs=worker.compute_log_probs(batch, "ref")
    )


def test_gspo_update_moves_sequences_with_their_advantage(worker) -> None:
    batch = _batch(worker)
    metrics = worker.update_policy(batch, mini_batch_size=4)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    assert metrics["actor/entropy"] > 0 and metrics["actor/grad_norm"] > 0
    delta = ((worker.compute_log_probs(batch) - batch.old_log_probs) * (batch.old_log_probs != 0)).sum(1)
    assert bool((delta[batch.advantages > 0] > 0).all()) and bool((delta[batch.advantages < 0] < 0).all())


def test_micro_batches_accumulate_to_the_big_batch_gradient(worker, tmp_path: Path) -> None:
    batch = _batch(worker)
    worker.save_checkpoint(str(tmp_path / "start"))
    results = {}
    for size in (1, 4):
        worker.load_checkpoint(str(tmp_path / "start"))
        worker.settings.actor.micro_batch_size_per_device_for_update = size
        metrics = worker.update_policy(batch, mini_batch_size=4)
        results[size] = (metrics, worker.full_state_dict())
    (m1, s1), (m4, s4) = results[1], results[4]
    assert m1["actor/grad_norm"] == pytest.approx(m4["actor/grad_norm"], rel=1e-5)
    assert m1["actor/pg_loss"] == pytest.approx(m4["actor/pg_loss"], abs=1e-6)
    for key in s1:
        torch.testing.assert_close(s1[key], s4[key], rtol=0, atol=5e-5, msg=key)


def test_forward_only_calls_leave_the_optimizer_state_offloaded(worker, monkeypatch) -> None:
    """Idle offload (issue 16, defect 5): log-probs bring back the parameters only; the AdamW state moves for the
    update alone. The worker is made to believe it runs on a GPU; the move functions are spies."""
    import easyr1.actor.worker as worker_module
    from easyr1.models.inputs import collate

    batch = _batch(worker)
    worker.update_policy(batch, mini_batch_size=4)  # the optimizer has state now
    moves: list[tuple[str, str]] = []
    monkeypatch.setattr(worker_module, "move_model", lambda model, device: moves.append(("params", device)))
    monkeypatch.setattr(worker_module, "move_optimizer", lambda optim, device: moves.append(("optimizer", device)))
    monkeypatch.setattr(worker, "device", "cuda")
    monkeypatch.setattr(
        worker,
        "inputs",
        lambda enc, b, idx: collate(
            [enc[i] for i in idx], [b.responses[i] for i in idx], pad_token_id=worker.pad_token_id
        ),
    )
    monkeypatch.setattr(worker.settings.actor.offload, "offload_params", True)
    monkeypatch.setattr(worker.settings.actor.offload, "offload_optimizer", True)
    worker.compute_log_probs(batch)
    assert moves == [("params", "cuda"), ("params", "cpu")]
    moves.clear()
    with worker._resident(optimizer=True):
        assert moves == [("params", "cuda"), ("optimizer", "cuda")]
    assert moves[2:] == [("params", "cpu"), ("optimizer", "cpu")]


def test_adamw_bf16_states_survive_a_distributed_checkpoint(worker, tmp_path: Path) -> None:
    """``optim.strategy: adamw_bf16`` (issue 16, defect 6) on the FSDP2 policy: the states are bf16 DTensor shards
    and a DCP save/load brings back the same bf16 states and schedule position."""
    from torch.distributed.tensor import DTensor

    from easyr1.config.actor import OptimConfig

    before = worker.settings.optim
    worker.configure_optimizer(OptimConfig(strategy="adamw_bf16", lr=1e-2, weight_decay=0.0), None)
    try:
        batch = _batch(worker)
        worker.update_policy(batch, mini_batch_size=4)
        states = list(worker.optimizer.state.values())
        assert states and all(
            isinstance(s[k], DTensor) and s[k].dtype == torch.bfloat16
            for s in states
            for k in ("exp_avg", "exp_avg_sq")
        )
        worker.save_checkpoint(str(tmp_path / "ckpt"))
        saved, saved_logp = worker.optimizer_state_summary(), worker.compute_log_probs(batch)
        worker.update_policy(batch, mini_batch_size=4)
        assert worker.optimizer_state_summary() != saved
        worker.load_checkpoint(str(tmp_path / "ckpt"))
        assert worker.optimizer_state_summary() == saved
        assert torch.equal(worker.compute_log_probs(batch), saved_logp)
        assert all(
            s[k].dtype == torch.bfloat16 for s in worker.optimizer.state.values() for k in ("exp_avg", "exp_avg_sq")
        )
    finally:
        worker.configure_optimizer(before, None)


def test_optimizer_step_clips_with_the_fsdp2_aware_norm_on_the_worker_device(worker, monkeypatch) -> None:
    """Issue 16, defect 4: the worker clips through ``grad_norm.clip_grad_norm_`` (local shard norms, reduced on
    the worker's device), not ``torch.nn.utils.clip_grad_norm_`` (DTensor collectives on the gradients' device,
    CPU under ``fsdp.enable_cpu_offload``)."""
    import easyr1.actor.worker as worker_module

    calls = []
    real = worker_module.clip_grad_norm_

    def spy(params, max_norm, *, device, **kwargs):
        calls.append(device)
        return real(params, max_norm, device=device, **kwargs)

    monkeypatch.setattr(worker_module, "clip_grad_norm_", spy)
    metrics = worker.update_policy(_batch(worker), mini_batch_size=4)
    assert calls == [worker.collective_device] and metrics["actor/grad_norm"] > 0
