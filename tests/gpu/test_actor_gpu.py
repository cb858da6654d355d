"""The actor's bf16 FSDP2 update on the GPU (issue 16, defects 1, 4, 5, 6):

* one rank in this process (a ``cpu:gloo,cuda:nccl`` world of 1): resident, with FSDP CPU offload (gradient
  clipping of CPU shards on a CUDA mesh), with ``optim.strategy: adamw_bf16`` (bf16 AdamW states on the GPU) and
  with idle offload (log-probs leave the AdamW state on the CPU);
* two processes, one GPU each (skipped with fewer than 2 GPUs): the NCCL world's collectives — micro-batch
  counts, loss denominators, metric sums, the gradient norm, a DCP checkpoint — with and without CPU offload.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
import torch

from easyr1.actor.batch import PolicyBatch
from easyr1.rollout.probe import probe_prompts

pytestmark = [pytest.mark.gpu, pytest.mark.filterwarnings("ignore:FSDP2-wrapped module")]

CASES = {
    "resident": {},
    "cpu_offload": {"enable_cpu_offload": True},
    "adamw_bf16": {"strategy": "adamw_bf16"},
    "idle_offload": {"offload_params": True, "offload_optimizer": True},
}


def _configure(gpu_config, case: str):
    fields = dict(CASES[case])
    strategy = fields.pop("strategy", "adamw")
    idle = {k: fields.pop(k) for k in ("offload_params", "offload_optimizer") if k in fields}
    cfg = gpu_config(**fields)
    cfg.worker.actor.optim.strategy = strategy
    for key, value in idle.items():
        setattr(cfg.worker.actor.offload, key, value)
    return cfg


def _batch() -> PolicyBatch:
    g = torch.Generator().manual_seed(4)
    prompts = probe_prompts(2)
    responses = [torch.randint(0, 500, (n,), generator=g).tolist() for n in (12, 20, 16, 8)]
    return PolicyBatch([prompts[i // 2] for i in range(4)], responses, advantages=torch.tensor([1.0, -1.0, 1.0, -1.0]))


def _optimizer_devices(worker) -> set[str]:
    return {
        _local(v).device.type
        for state in worker.optimizer.state.values()
        for k, v in state.items()
        if k in ("exp_avg", "exp_avg_sq")
    }


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t


@pytest.mark.parametrize("case", list(CASES))
def test_bf16_fsdp2_update(gpu_config, record, case) -> None:
    import torch.distributed as dist

    from easyr1.actor.settings import actor_settings
    from easyr1.actor.worker import ActorWorker

    if dist.is_initialized():
        pytest.skip("a default process group already exists in this process")
    cfg = _configure(gpu_config, case)
    worker = ActorWorker(actor_settings(cfg), rank=0, world_size=1)
    try:
        info = worker.setup(*worker.rendezvous())
        assert info["device"] == "cuda" and info["backend"] == "cpu:gloo,cuda:nccl"
        batch = _batch()
        batch = batch.with_fields(
            old_log_probs=worker.compute_log_probs(batch), ref_log_probs=worker.compute_log_probs(batch, "ref")
        )
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        metrics = worker.update_policy(batch, mini_batch_size=4)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values()), metrics
        assert metrics["actor/grad_norm"] > 0 and metrics["actor/skipped_steps"] == 0
        if case == "cpu_offload":
            assert {_local(p).device.type for p in worker.model.parameters()} == {"cpu"}
        if case == "adamw_bf16":
            dtypes = {
                v.dtype for s in worker.optimizer.state.values() for k, v in s.items() if k in ("exp_avg", "exp_avg_sq")
            }
            assert dtypes == {torch.bfloat16} and _optimizer_devices(worker) == {"cuda"}
        if case == "idle_offload":
            assert _optimizer_devices(worker) == {"cpu"}  # offloaded after the update
        mask = batch.old_log_probs != 0
        delta = ((worker.compute_log_probs(batch) - batch.old_log_probs) * mask).sum(1)
        if case == "idle_offload":
            assert _optimizer_devices(worker) == {"cpu"}  # log-probs did not bring the AdamW state back
        advantages = batch.advantages
        assert bool((delta[advantages > 0] > 0).all()) and bool((delta[advantages < 0] < 0).all()), delta
        record(
            f"actor_bf16_update_{case}",
            ok=True,
            update_s=round(seconds, 3),
            peak_gpu_mib=round(torch.cuda.max_memory_allocated() / 2**20, 1),
            grad_norm=metrics["actor/grad_norm"],
        )
    finally:
        worker.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_gpu_rank(rank: int, cfg, port: int, out: str) -> None:
    # What Ray does: the worker sees its own GPU as cuda:0 (set before anything initialises CUDA in this process).
    os.environ["CUDA_VISIBLE_DEVICES"] = str(rank)
    from easyr1.actor.settings import actor_settings
    from easyr1.actor.worker import ActorWorker

    worker = ActorWorker(actor_settings(cfg), rank=rank, world_size=2)
    try:
        info = worker.setup("127.0.0.1", port)
        batch = _batch()
        batch = batch.with_fields(
            old_log_probs=worker.compute_log_probs(batch), ref_log_probs=worker.compute_log_probs(batch, "ref")
        )
        metrics = worker.update_policy(batch, mini_batch_size=4)
        worker.save_checkpoint(str(Path(out) / "ckpt"))
        saved = worker.compute_log_probs(batch)
        worker.update_policy(batch, mini_batch_size=4)
        worker.load_checkpoint(str(Path(out) / "ckpt"))
        restored = bool(torch.equal(worker.compute_log_probs(batch), saved))
        result = {"backend": info["backend"], "restored": restored, **metrics}
        Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        worker.shutdown()


@pytest.mark.parametrize("cpu_offload", [False, True], ids=["resident", "cpu_offload"])
def test_two_process_nccl_world(gpu_config, record, tmp_path: Path, cpu_offload: bool) -> None:
    import torch.multiprocessing as mp

    # Checked here, not in a skipif mark: the spawned ranks import this module, and counting devices at import
    # would initialise CUDA there before each rank restricts CUDA_VISIBLE_DEVICES to its own GPU.
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs for a 2-process NCCL world")

    cfg = gpu_config(enable_cpu_offload=cpu_offload)
    cfg.worker.actor.num_workers = 2
    start = time.perf_counter()
    mp.start_processes(_two_gpu_rank, args=(cfg, _free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for result in ranks:
        assert result["backend"] == "cpu:gloo,cuda:nccl" and result["restored"]
        assert result["actor/grad_norm"] > 0 and result["actor/skipped_steps"] == 0
    # Reduced metrics are identical on both ranks (the sums went through NCCL on the GPU).
    for key in ("actor/grad_norm", "actor/pg_loss", "actor/tokens", "actor/entropy"):
        assert ranks[0][key] == ranks[1][key], key
    record(
        f"actor_two_process_nccl_{'cpu_offload' if cpu_offload else 'resident'}",
        ok=True,
        seconds=round(time.perf_counter() - start, 1),
        grad_norm=ranks[0]["actor/grad_norm"],
    )
