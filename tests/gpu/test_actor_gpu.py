"""The actor's bf16 FSDP2 update on one GPU (NCCL world of 1, in this process), with and without FSDP CPU offload:
log-probs, reference log-probs, one PPO update that moves each sequence with its advantage."""

from __future__ import annotations

import time

import pytest
import torch

from easyr1.actor.batch import PolicyBatch
from easyr1.rollout.probe import probe_prompts

pytestmark = [pytest.mark.gpu, pytest.mark.filterwarnings("ignore:FSDP2-wrapped module")]


@pytest.mark.parametrize("cpu_offload", [False, True], ids=["resident", "cpu_offload"])
def test_bf16_fsdp2_update(gpu_config, record, cpu_offload) -> None:
    import torch.distributed as dist

    from easyr1.actor.settings import actor_settings
    from easyr1.actor.worker import ActorWorker

    if dist.is_initialized():
        pytest.skip("a default process group already exists in this process")
    cfg = gpu_config(enable_cpu_offload=cpu_offload)
    worker = ActorWorker(actor_settings(cfg), rank=0, world_size=1)
    try:
        info = worker.setup(*worker.rendezvous())
        assert info["device"] == "cuda" and info["backend"] == "nccl"
        g = torch.Generator().manual_seed(4)
        prompts = probe_prompts(2)
        responses = [torch.randint(0, 500, (n,), generator=g).tolist() for n in (12, 20, 16, 8)]
        advantages = torch.tensor([1.0, -1.0, 1.0, -1.0])
        batch = PolicyBatch([prompts[i // 2] for i in range(4)], responses, advantages=advantages)
        batch = batch.with_fields(
            old_log_probs=worker.compute_log_probs(batch), ref_log_probs=worker.compute_log_probs(batch, "ref")
        )
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        metrics = worker.update_policy(batch, mini_batch_size=4)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values()), metrics
        assert metrics["actor/grad_norm"] > 0
        mask = batch.old_log_probs != 0
        delta = ((worker.compute_log_probs(batch) - batch.old_log_probs) * mask).sum(1)
        assert bool((delta[advantages > 0] > 0).all()) and bool((delta[advantages < 0] < 0).all()), delta
        record(
            f"actor_bf16_update_{'cpu_offload' if cpu_offload else 'resident'}",
            ok=True,
            update_s=round(seconds, 3),
            peak_gpu_mib=round(torch.cuda.max_memory_allocated() / 2**20, 1),
            grad_norm=metrics["actor/grad_norm"],
        )
    finally:
        worker.shutdown()
