"""vLLM's CUDA engine with the tiny policy, as production starts it (Ray pools; on a one-GPU machine the actor and
the engine share the GPU):
generation with two images per prompt and n samples, then weight sync actor → engine after an update."""

from __future__ import annotations

import importlib.util
import time

import pytest
import torch

from easyr1.actor.batch import PolicyBatch
from easyr1.core.types import SamplingParams
from easyr1.rollout.probe import probe_prompts

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (pip install 'easyr1[gpu]')"
    ),
    pytest.mark.filterwarnings("ignore:FSDP2-wrapped module"),
]


@pytest.fixture(scope="module")
def pools(gpu_ray, gpu_config, record):
    from easyr1.actor.pool import ActorPool
    from easyr1.rollout.pool import RolloutPool

    cfg = gpu_config(actor_gpus=1, rollout_gpus=1)
    actor = ActorPool(cfg)
    start = time.perf_counter()
    try:
        rollout = RolloutPool(cfg)
    except Exception:
        actor.shutdown()
        raise
    record("vllm_engine_start", seconds=round(time.perf_counter() - start, 1))
    yield actor, rollout
    rollout.shutdown()
    actor.shutdown()


def test_vllm_generates_with_two_images_and_n_samples(pools, record) -> None:
    _, rollout = pools
    prompts = probe_prompts(2)
    assert all(len(p.images) == 2 for p in prompts)
    start = time.perf_counter()
    outs = rollout.generate(prompts, SamplingParams(n=2, max_tokens=16, seed=5))
    seconds = time.perf_counter() - start
    assert [(o.prompt_id, o.sample_index) for o in outs] == [(p.id, i) for p in prompts for i in range(2)]
    assert all(o.token_ids and o.logprobs and len(o.logprobs) == len(o.token_ids) for o in outs)
    assert all(torch.isfinite(torch.tensor(o.logprobs)).all() for o in outs)
    record("vllm_generate", ok=True, sequences=len(outs), seconds=round(seconds, 3))


def _update_once(actor, rollout) -> None:
    prompts = probe_prompts(2)
    outs = rollout.generate(prompts, SamplingParams(n=2, max_tokens=12, seed=7))
    batch = PolicyBatch([prompts[i // 2] for i in range(4)], [o.token_ids for o in outs])
    batch = batch.with_fields(
        old_log_probs=actor.compute_log_probs(batch),
        ref_log_probs=actor.compute_ref_log_probs(batch),
        advantages=torch.tensor([1.0, -1.0, 1.0, -1.0]),
    )
    actor.update_policy(batch)


@pytest.mark.parametrize("method", ["object_store", "collective"])
def test_weight_sync_after_an_update(pools, record, method) -> None:
    if method == "collective" and torch.cuda.device_count() < 2:
        pytest.skip("NCCL cannot put two ranks of one communicator on the same GPU: the collective sync needs 2 GPUs")
    actor, rollout = pools
    rollout.cfg.worker.rollout.weight_sync = method
    _update_once(actor, rollout)
    stale = rollout.probe_difference(actor)
    metrics = rollout.sync_weights(actor)
    fresh = metrics["rollout/sync_probe_max_abs_diff"]
    assert fresh <= 0.1 and fresh < stale, (stale, fresh)
    record(
        f"weight_sync_{method}",
        ok=True,
        seconds=round(metrics["rollout/sync_time_s"], 3),
        probe_diff_before=round(stale, 4),
        probe_diff_after=round(fresh, 4),
    )
