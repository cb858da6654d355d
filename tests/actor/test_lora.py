"""LoRA on the FSDP2 actor (one gloo rank in this process, no Ray): the reference is the base model with adapters
disabled (no copy), an update changes adapters only, weight sync into the hf engine (adapters or merged weights)
matches the actor's log-probs, and checkpoint → resume → export (merged folder and PEFT adapter folder) round-trips
through plain transformers/peft."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from easyr1.actor.batch import PolicyBatch
from easyr1.rollout.probe import probe_prompts

pytestmark = pytest.mark.filterwarnings("ignore:FSDP2-wrapped module")

PROBE_TOLERANCE = 1e-4
"""Same dtype on both sides (fp32 CPU): the sync probe's tolerance for this setting (rollout config: ~1e-6)."""


def _batch(seed: int = 4) -> PolicyBatch:
    g = torch.Generator().manual_seed(seed)
    prompts = probe_prompts(2)
    responses = [torch.randint(0, 800, (n,), generator=g).tolist() for n in (4, 8, 6, 3)]
    return PolicyBatch([prompts[i // 2] for i in range(4)], responses, advantages=torch.tensor([1.0, -1.0, 1.0, -1.0]))


def _prepared(worker, seed: int = 4) -> PolicyBatch:
    batch = _batch(seed)
    return batch.with_fields(
        old_log_probs=worker.compute_log_probs(batch), ref_log_probs=worker.compute_log_probs(batch, "ref")
    )


def _plain_log_probs(model, processor, batch: PolicyBatch) -> torch.Tensor:
    """(B, T) log-probs of a plain (or peft) model, zeros past each response — the actor's output layout."""
    from easyr1.models.forward import response_log_probs
    from easyr1.models.inputs import collate, encode_prompt

    encoded = [encode_prompt(processor, p) for p in batch.prompts]
    inputs = collate(encoded, batch.responses, pad_token_id=processor.tokenizer.pad_token_id)
    with torch.no_grad():
        logp, _ = response_log_probs(model, inputs)
    return (logp * inputs.response_mask).float()


def _raw_state(worker) -> dict[str, torch.Tensor]:
    from easyr1.actor.fsdp import full_state_dict

    return {k: v.clone() for k, v in full_state_dict(worker.model).items()}


@pytest.fixture(scope="module")
def worker(make_config) -> Iterator:
    import torch.distributed as dist

    from easyr1.actor.settings import actor_settings
    from easyr1.actor.worker import ActorWorker

    if dist.is_initialized():
        pytest.skip("a default process group already exists in this process")
    cfg = make_config(num_workers=1, lr=1e-2)
    cfg.worker.actor.model.freeze_vision_tower = True
    cfg.worker.actor.lora.rank = 8
    cfg.worker.actor.lora.alpha = 16.0
    cfg.algorithm.use_kl_loss, cfg.algorithm.disable_kl = True, False
    w = ActorWorker(actor_settings(cfg), rank=0, world_size=1)
    w.setup(*w.rendezvous())
    w.update_policy(_prepared(w), mini_batch_size=4)  # B starts at zero: one step makes the adapters matter
    yield w
    w.shutdown()


@pytest.fixture(scope="module")
def base(tiny_policy_dir: Path):
    from easyr1.models.loading import load_policy

    return load_policy(tiny_policy_dir)


def test_only_adapters_train_and_no_reference_copy_is_loaded(worker) -> None:
    assert worker.settings.with_reference and worker.ref_model is None
    trainable = [n for n, p in worker.model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert not any(".visual." in n for n in trainable)
    assert {n.rsplit(".lora_", 1)[0].rsplit(".", 1)[-1] for n in trainable} == set(
        worker.settings.actor.lora.target_modules
    )


def test_reference_log_probs_are_the_base_model_s(worker, base) -> None:
    batch = _batch()
    ref = worker.compute_log_probs(batch, "ref", temperature=1.0)
    expected = _plain_log_probs(base.model, base.processor, batch)
    torch.testing.assert_close(ref, expected, rtol=0, atol=1e-5)
    actor = worker.compute_log_probs(batch, temperature=1.0)
    assert (actor - ref).abs().max() > 1e-3, "the trained adapters must change the policy"
    assert all(p.requires_grad for n, p in worker.model.named_parameters() if ".lora_" in n), "restored"


def test_an_update_changes_only_adapter_weights(worker) -> None:
    before = _raw_state(worker)
    worker.update_policy(_prepared(worker, seed=7), mini_batch_size=4)
    after = _raw_state(worker)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "the update must change something"
    assert all(".lora_" in k for k in changed), sorted(k for k in changed if ".lora_" not in k)[:5]
    assert any(".lora_B." in k for k in changed) and any(".lora_A." in k for k in changed)


def _pair(worker, tiny_policy_dir: Path):
    from easyr1.rollout.hf_engine import HFRolloutEngine

    engine = HFRolloutEngine(str(tiny_policy_dir), dtype="float32", threads=1)
    host, port = worker.start_weight_sync_server()
    joiner = threading.Thread(target=engine.init_weight_sync, args=(host, port, 1, 2, "gloo"))
    joiner.start()
    worker.join_weight_sync(host, port, 2, "gloo")
    joiner.join(timeout=60)
    return engine


def _sync(worker, engine, plan) -> tuple[int, int]:
    result: dict[str, int] = {}
    receiver = threading.Thread(target=lambda: result.update(received=engine.receive_weights(plan)))
    receiver.start()
    sent = worker.broadcast_weights(plan)
    receiver.join(timeout=60)
    return sent, result["received"]


def _engine_matches_actor(worker, engine) -> float:
    batch = _batch(11)
    actor = worker.compute_log_probs(batch, temperature=1.0)
    got = engine.log_probs(batch.prompts, batch.responses)
    return max(abs(a - float(actor[i, j])) for i, row in enumerate(got) for j, a in enumerate(row))


@pytest.mark.parametrize("mode", ["adapters", "merged"])
def test_weight_sync_matches_the_actor(worker, tiny_policy_dir: Path, mode: str, monkeypatch) -> None:
    monkeypatch.setattr(worker.settings, "lora_sync", mode)
    engine = _pair(worker, tiny_policy_dir)
    plan = worker.weight_plan("float32", 1 << 20)
    first, received = _sync(worker, engine, plan)
    assert first == received == plan.sync_bytes(full=True)
    assert _engine_matches_actor(worker, engine) < PROBE_TOLERANCE
    worker.update_policy(_prepared(worker, seed=9), mini_batch_size=4)
    update, received = _sync(worker, engine, plan)
    assert update == received == plan.sync_bytes(full=False)
    assert _engine_matches_actor(worker, engine) < PROBE_TOLERANCE
    if mode == "adapters":
        assert {t.name for t in plan.tensors if not t.static} == {t.name for t in plan.tensors if ".lora_" in t.name}
        assert update < 0.15 * plan.sync_bytes(full=True), update
        assert any(".lora_A." in k for k in engine.model.state_dict()), "the engine serves adapter layers"
    else:
        assert not any(".lora_" in t.name for t in plan.tensors)
        assert not any(".lora_" in k for k in engine.model.state_dict()), "merged weights: a plain engine model"
        assert update < plan.sync_bytes(full=True)


def test_checkpoint_resume_and_export_round_trip(worker, base, tiny_policy_dir: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import Qwen2_5_VLForConditionalGeneration

    from easyr1.actor.checkpoint import export_checkpoint

    batch = _batch(5)
    ckpt = tmp_path / "ckpt"
    worker.save_checkpoint(str(ckpt))
    meta = json.loads((ckpt / "actor" / "meta.json").read_text())
    assert meta["trainable_only"] and meta["lora"]["rank"] == 8
    saved_logp, saved_optim = worker.compute_log_probs(batch, temperature=1.0), worker.optimizer_state_summary()
    assert saved_optim and all(".lora_" in k for k in saved_optim if "/" in k)
    ckpt_bytes = sum(f.stat().st_size for f in (ckpt / "actor" / "dcp").iterdir())
    model_bytes = sum(t.numel() * t.element_size() for t in base.model.state_dict().values())
    assert ckpt_bytes < 0.5 * model_bytes, "adapters + their optimizer state, not the base weights"

    worker.update_policy(_prepared(worker, seed=6), mini_batch_size=4)
    assert not torch.equal(worker.compute_log_probs(batch, temperature=1.0), saved_logp)
    worker.load_checkpoint(str(ckpt))
    assert torch.equal(worker.compute_log_probs(batch, temperature=1.0), saved_logp)
    assert worker.optimizer_state_summary() == saved_optim

    merged_dir = export_checkpoint(ckpt, tmp_path / "merged")
    merged = Qwen2_5_VLForConditionalGeneration.from_pretrained(merged_dir, dtype=torch.float32)
    torch.testing.assert_close(_plain_log_probs(merged, base.processor, batch), saved_logp, rtol=0, atol=1e-5)

    adapter_dir = export_checkpoint(ckpt, tmp_path / "adapter", adapter=True)
    assert (adapter_dir / "adapter_config.json").is_file() and (adapter_dir / "adapter_model.safetensors").is_file()
    plain = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_policy_dir, dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(plain, adapter_dir).eval()
    torch.testing.assert_close(_plain_log_probs(peft_model, base.processor, batch), saved_logp, rtol=0, atol=1e-5)


def test_export_refuses_adapters_of_a_full_fine_tuning_checkpoint(tmp_path: Path) -> None:
    from easyr1.actor.checkpoint import export_checkpoint

    root = tmp_path / "ckpt" / "actor"
    (root / "dcp").mkdir(parents=True)
    (root / "huggingface").mkdir()
    (root / "huggingface" / "config.json").write_text("{}")
    (root / "meta.json").write_text(json.dumps({"param_dtype": "float32"}))
    with pytest.raises(ValueError, match="no adapters to export"):
        export_checkpoint(tmp_path / "ckpt", tmp_path / "out", adapter=True)
