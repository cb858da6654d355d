"""LoRA weight sync into the production ``VLLMRolloutEngine`` (vLLM's CPU backend, Ray actor in ``.venv-vllm``),
both modes (issue 22): ``merged`` (``auto``) sends ``W + scaling · B A`` through the ordinary collective path — the
first sync full, updates only the adapted decoder layers; ``adapters`` sends the LoRA matrices only after one full
sync, and the engine serves them through vLLM's own LoRA loading (a ``LoRARequest`` per sync). The probe passes
after each sync in both.

Skipped, with the reason, where the vLLM environment is absent (CI creates it)."""

from __future__ import annotations

import pytest
from rollout_testkit import requires_vllm, train_once, use_vllm_engine

pytestmark = [pytest.mark.slow, requires_vllm]


@pytest.fixture(scope="module", params=["merged", "adapters"])
def pools(request, ray_session, make_config, tmp_path_factory: pytest.TempPathFactory):
    from easyr1.actor.pool import ActorPool
    from easyr1.models.tiny import build_tiny_policy
    from easyr1.rollout.pool import RolloutPool
    from easyr1.rollout.vllm_engine import VLLM_TINY_SPEC

    policy = build_tiny_policy(tmp_path_factory.mktemp("vllm_lora") / "policy", seed=0, spec=VLLM_TINY_SPEC)
    cfg = make_config(num_workers=1, n=2)
    cfg.worker.actor.model.model_path = str(policy)
    cfg.worker.actor.model.freeze_vision_tower = True
    cfg.worker.actor.lora.rank = 8
    cfg.worker.actor.lora.alpha = 16.0
    cfg.worker.actor.lora.sync = request.param
    use_vllm_engine(cfg)
    actor = ActorPool(cfg)
    rollout = RolloutPool(cfg, startup_timeout_s=420)
    yield request.param, actor, rollout
    rollout.shutdown()
    actor.shutdown()


def test_lora_weights_keep_the_vllm_engine_in_sync(pools) -> None:
    mode, actor, rollout = pools
    metrics = rollout.sync_weights(actor)  # full: the group is new
    plan = rollout._plan
    lora_names = [t.name for t in plan.tensors if ".lora_" in t.name]
    if mode == "merged":
        assert not lora_names, "vLLM gets plain (merged) weights"
    else:
        assert lora_names and all(not t.static for t in plan.tensors if ".lora_" in t.name)
    assert metrics["rollout/sync_bytes"] == plan.total_bytes
    assert metrics["rollout/sync_probe_max_abs_diff"] <= 1e-4

    for _ in range(2):  # the second update replaces the first adapter (a new LoRARequest id)
        train_once(actor, rollout)
        assert rollout.probe_difference(actor) > 1e-3  # stale until the update arrives
        metrics = rollout.sync_weights(actor)
        sent = {t.name for t in plan.tensors if not t.static}
        if mode == "merged":
            assert sent and all(".layers." in name for name in sent), "updates carry the adapted decoder layers only"
        else:
            assert sent == set(lora_names), "updates carry the adapters only"
            assert plan.sync_bytes(False) < 0.2 * plan.total_bytes
        assert metrics["rollout/sync_bytes"] == plan.sync_bytes(False) < plan.total_bytes
        assert metrics["rollout/sync_probe_max_abs_diff"] <= 1e-4
