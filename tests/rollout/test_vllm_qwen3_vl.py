"""The tiny Qwen3-VL policy served by the production ``VLLMRolloutEngine`` (vLLM's CPU backend, Ray actor in
``.venv-vllm``), issue 22: vLLM loads the transformers folder (its own Qwen3-VL implementation: interleaved M-RoPE,
DeepStack), the collective weight sync sends transformers names that vLLM's ``hf_to_vllm_mapper`` places, and the
sync probe (engine log-probs vs the actor's, prompts with images) passes after the first sync and after an update —
with full fine-tuning and with LoRA (``worker.actor.lora.sync=auto``: merged weights, updates carry the adapted
decoder layers only).

Skipped, with the reason, where the vLLM environment is absent (CI creates it)."""

from __future__ import annotations

import pytest
from rollout_testkit import requires_vllm, train_once, use_vllm_engine

pytestmark = [pytest.mark.slow, requires_vllm]


@pytest.fixture(scope="module", params=[False, True], ids=["full", "lora"])
def pools(request, ray_session, make_config, tmp_path_factory: pytest.TempPathFactory):
    from easyr1.actor.pool import ActorPool
    from easyr1.models.tiny import build_tiny_policy
    from easyr1.rollout.pool import RolloutPool
    from easyr1.rollout.vllm_engine import VLLM_TINY_SPEC

    policy = build_tiny_policy(
        tmp_path_factory.mktemp("vllm_qwen3") / "policy", seed=0, spec=VLLM_TINY_SPEC, family="qwen3_vl"
    )
    cfg = make_config(num_workers=1, n=2)
    cfg.worker.actor.model.model_path = str(policy)
    cfg.worker.actor.model.model_family = "qwen3_vl"
    if request.param:
        cfg.worker.actor.model.freeze_vision_tower = True
        cfg.worker.actor.lora.rank = 8
        cfg.worker.actor.lora.alpha = 16.0
    use_vllm_engine(cfg)
    actor = ActorPool(cfg)
    rollout = RolloutPool(cfg, startup_timeout_s=420)
    yield actor, rollout, request.param
    rollout.shutdown()
    actor.shutdown()


def test_vllm_serves_the_tiny_qwen3_vl_and_stays_in_sync(pools) -> None:
    actor, rollout, lora = pools
    metrics = rollout.sync_weights(actor)  # full: the group is new
    plan = rollout._plan
    names = plan.sent_names(True)
    assert any(n.startswith("model.visual.deepstack_merger_list.") for n in names)  # transformers names on the wire
    assert not any(".lora_" in n for n in names), "vLLM gets plain (merged) weights"
    assert metrics["rollout/sync_bytes"] == plan.total_bytes
    assert metrics["rollout/sync_probe_max_abs_diff"] <= 1e-4

    train_once(actor, rollout)
    assert rollout.probe_difference(actor) > 1e-3  # stale until the update arrives
    metrics = rollout.sync_weights(actor)
    if lora:
        sent = {t.name for t in plan.tensors if not t.static}
        assert sent and all(".layers." in name for name in sent), "updates carry the adapted decoder layers only"
        assert metrics["rollout/sync_bytes"] == plan.sync_bytes(False) < plan.total_bytes
    assert metrics["rollout/sync_probe_max_abs_diff"] <= 1e-4
