"""The production ``VLLMRolloutEngine``, for real, on vLLM's CPU backend: started by ``RolloutPool`` as a Ray actor
in the vLLM environment (``.venv-vllm`` from scripts/setup_vllm_cpu.sh, via ``runtime_env`` ``py_executable``),
beside a 2-rank FSDP2 actor (gloo). Generation with two images and n samples, log-probs against a transformers
forward, stop tokens, greedy n > 1, weight sync through the worker extension (collective and object store), the
probe check, fresh images after an update (encoder cache), and the weight plan through vLLM's own msgpack codec.

Skipped, with the reason, only where the vLLM environment is absent (CI creates it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rollout_testkit import REPO, VLLM_PYTHON, requires_vllm, train_once

from easyr1.actor.batch import PolicyBatch
from easyr1.core.types import SamplingParams
from easyr1.rollout.probe import probe_prompt, probe_prompts

pytestmark = [pytest.mark.slow, requires_vllm]


def test_weight_plan_survives_vllms_msgpack_rpc_codec() -> None:
    """What collective_rpc does to its arguments (vLLM's MsgpackEncoder/Decoder): the dataclass arrives as a dict
    (the old crash), the wire form rebuilds the same plan, and serialised weights arrive as bytes."""
    script = r"""
import torch
from vllm.v1.serial_utils import MsgpackDecoder, MsgpackEncoder
from easyr1.transfer.weight_sync import TensorSpec, WeightPlan, deserialize_state, make_plan, serialize_state

plan = make_plan([TensorSpec("a.weight", (4, 3), "bfloat16"), TensorSpec("b", (2,), "int64"),
                  TensorSpec("c.weight", (5,), "bfloat16")], bucket_bytes=16)
enc, dec = MsgpackEncoder(), MsgpackDecoder()
raw = dec.decode(enc.encode((plan,)))[0]
assert not isinstance(raw, WeightPlan) and isinstance(raw, dict), type(raw)
assert WeightPlan.from_wire(dec.decode(enc.encode((plan.to_wire(),)))[0]) == plan
state = {"w": torch.randn(3, 2), "n": torch.arange(3)}
blobs = list(serialize_state(state, torch.bfloat16, 1 << 20))
back = dec.decode(enc.encode((blobs,)))[0]
items = dict(item for blob in back for item in deserialize_state(blob))
assert items["w"].dtype == torch.bfloat16 and torch.equal(items["w"], state["w"].bfloat16())
assert torch.equal(items["n"], state["n"])
print("ok")
"""
    done = subprocess.run([str(VLLM_PYTHON), "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


# ------------------------------------------------------------------------------------------- engine under Ray
@pytest.fixture(scope="module")
def vllm_policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from easyr1.models.tiny import build_tiny_policy
    from easyr1.rollout.vllm_engine import VLLM_TINY_SPEC

    return build_tiny_policy(tmp_path_factory.mktemp("vllm") / "policy", seed=0, spec=VLLM_TINY_SPEC)


@pytest.fixture(scope="module")
def pools(ray_session, make_config, vllm_policy_dir: Path):
    from easyr1.actor.pool import ActorPool
    from easyr1.rollout.pool import RolloutPool

    cfg = make_config(num_workers=2, n=2)
    cfg.worker.actor.model.model_path = str(vllm_policy_dir)
    cfg.worker.actor.model.freeze_vision_tower = False  # updates change vision embeddings (encoder cache check)
    cfg.worker.actor.fsdp.enable_rank0_init = True
    cfg.worker.rollout.name = "vllm"
    cfg.worker.rollout.engine_python = str(VLLM_PYTHON)
    cfg.worker.rollout.weight_sync_bucket_mb = 1  # several buckets even for the tiny model
    cfg.worker.rollout.max_model_len = 512
    cfg.worker.rollout.kv_cache_memory_gb = 0.25
    cfg.cluster.rollout.num_gpus_per_worker = 0  # vLLM's CPU backend
    actor = ActorPool(cfg)
    rollout = RolloutPool(cfg, startup_timeout_s=420)
    yield actor, rollout
    rollout.shutdown()
    actor.shutdown()


@pytest.fixture(scope="module")
def hf_forward(vllm_policy_dir: Path):
    """A plain transformers forward of the starting weights (in this process)."""
    from easyr1.rollout.hf_engine import HFRolloutEngine

    return HFRolloutEngine(str(vllm_policy_dir), threads=1)


def _max_diff(outputs, reference) -> float:
    return max(
        float((torch.tensor(o.logprobs) - torch.as_tensor(ref)[: len(o.logprobs)]).abs().max())
        for o, ref in zip(outputs, reference, strict=True)
    )


def test_engine_runs_in_the_vllm_environment_on_cpu(pools) -> None:
    import ray

    _, rollout = pools
    info = ray.get(rollout.engines[0].__ray_call__.remote(lambda self: (sys.executable, self.on_cpu, self._dtype)))
    assert Path(info[0]).resolve() == Path(VLLM_PYTHON).resolve() or info[0] == str(VLLM_PYTHON)
    assert info[1:] == (True, "float32")


def test_two_images_n_samples_and_log_probs_equal_a_transformers_forward(pools, hf_forward) -> None:
    _, rollout = pools
    prompts = probe_prompts(2)
    outs = rollout.generate(prompts, SamplingParams(n=3, max_tokens=12, seed=11))
    assert [(o.prompt_id, o.sample_index) for o in outs] == [(p.id, k) for p in prompts for k in range(3)]
    for o in outs:
        assert 0 < len(o.token_ids) <= 12 and len(o.logprobs) == len(o.token_ids)
        assert all(lp <= 0 for lp in o.logprobs)
        assert o.text == hf_forward.tokenizer.decode(o.token_ids, skip_special_tokens=True)
        assert not set(o.token_ids) & set(rollout_banned(hf_forward))
    assert len({tuple(o.token_ids) for o in outs[:3]}) > 1, "the n samples of a group should differ"
    again = rollout.generate(prompts, SamplingParams(n=3, max_tokens=12, seed=11))
    assert [o.token_ids for o in again] == [o.token_ids for o in outs]
    reference = hf_forward.log_probs([prompts[i // 3] for i in range(6)], [o.token_ids for o in outs])
    assert _max_diff(outs, reference) <= 1e-4


def rollout_banned(hf_forward) -> list[int]:
    from easyr1.models.loading import vision_token_ids

    return vision_token_ids(hf_forward.tokenizer)


def test_greedy_with_n_above_one(pools) -> None:
    _, rollout = pools
    prompts = probe_prompts(2)
    outs = rollout.generate(prompts, SamplingParams(n=3, temperature=0.0, max_tokens=8))
    assert [(o.prompt_id, o.sample_index) for o in outs] == [(p.id, k) for p in prompts for k in range(3)]
    for group in (outs[:3], outs[3:]):
        assert len({tuple(o.token_ids) for o in group}) == 1
    single = rollout.generate(prompts, SamplingParams(n=1, temperature=0.0, max_tokens=8))
    assert [o.token_ids for o in single] == [outs[0].token_ids, outs[3].token_ids]


def test_collective_sync_then_fresh_images_match_the_actor(pools) -> None:
    actor, rollout = pools
    fresh = [probe_prompt(7 + i, size=56 + 28 * i) for i in range(2)]  # images no engine has seen yet
    # ~360 prompt tokens: several full KV blocks, so the prefix cache holds them from before the update.
    seen = probe_prompt(5, instruction=" ".join(["Make the red ball on the grass bigger and move it left."] * 18))
    rollout.generate([seen], SamplingParams(n=1, max_tokens=4, seed=0))
    train_once(actor, rollout)
    stale = rollout.probe_difference(actor)
    assert stale > 1e-3, "the engine should be stale after the update"
    rollout.cfg.worker.rollout.sync_probe_tolerance = 1e-4
    metrics = rollout.sync_weights(actor)
    assert metrics["rollout/sync_probe_max_abs_diff"] <= 1e-4  # probe images: seen before the update
    assert metrics["rollout/sync_bytes"] > 0
    prompts = [*fresh, seen]
    outs = rollout.generate(prompts, SamplingParams(n=2, max_tokens=10, seed=3))
    batch = PolicyBatch([prompts[i // 2] for i in range(6)], [o.token_ids for o in outs])
    assert _max_diff(outs, actor.compute_log_probs(batch, temperature=1.0)) <= 1e-4
    # A second sync reuses the group.
    train_once(actor, rollout)
    assert rollout.sync_weights(actor)["rollout/sync_probe_max_abs_diff"] <= 1e-4


def test_a_stale_engine_fails_the_probe_check(pools) -> None:
    actor, rollout = pools
    train_once(actor, rollout)
    rollout.cfg.worker.rollout.sync_probe_tolerance = 1e-4
    with pytest.raises(RuntimeError, match="sync check failed"):
        rollout.verify_sync(actor)
    rollout.sync_weights(actor)


def test_object_store_sync(pools) -> None:
    actor, rollout = pools
    train_once(actor, rollout)
    rollout.cfg.worker.rollout.weight_sync = "object_store"
    try:
        assert rollout.probe_difference(actor) > 1e-3
        assert rollout.sync_weights(actor)["rollout/sync_probe_max_abs_diff"] <= 1e-4
    finally:
        rollout.cfg.worker.rollout.weight_sync = "collective"


def test_an_update_without_the_vision_tower_keeps_the_engines(pools) -> None:
    """A partial update (a frozen vision tower is not resent) loads what it carries and leaves the rest intact."""
    actor, rollout = pools
    state = actor.full_state_dict()
    rollout.update_weights(state)
    assert rollout.probe_difference(actor) <= 1e-4
    language_only = {k: v for k, v in state.items() if ".visual." not in f".{k}"}
    assert len(language_only) < len(state)
    perturbed = {k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v for k, v in language_only.items()}
    rollout.update_weights(perturbed)
    assert rollout.probe_difference(actor) > 1e-3  # the language model changed…
    rollout.update_weights(language_only)
    assert rollout.probe_difference(actor) <= 1e-4  # …and the vision tower never did


def test_stop_tokens_end_generation(pools, hf_forward) -> None:
    """Weights under which every step's most likely token is a stop token (<|im_end|> or <|endoftext|>): generation
    ends after one token with finish_reason stop; the actor's weights come back afterwards."""
    actor, rollout = pools
    from easyr1.models.loading import stop_token_ids

    stops = stop_token_ids(hf_forward.tokenizer)[:2]
    state = actor.full_state_dict()
    forced = dict(state)
    norm = next(k for k in state if k.endswith("language_model.norm.weight"))
    forced[norm] = torch.zeros_like(state[norm])
    forced[norm][0] = 1.0  # final hidden state = (h0, 0, …, 0)
    head = torch.zeros_like(state["lm_head.weight"])
    head[stops[0], 0], head[stops[1], 0] = 1e3, -1e3  # whatever h0's sign, one stop token wins by far
    forced["lm_head.weight"] = head
    rollout.update_weights(forced)
    try:
        outs = rollout.generate(probe_prompts(2), SamplingParams(n=2, max_tokens=8, seed=1))
        for o in outs:
            assert len(o.token_ids) == 1 and o.token_ids[0] in stops and o.finish_reason == "stop", o
        long = rollout.generate(probe_prompts(1), SamplingParams(n=1, temperature=0.0, max_tokens=8))
        assert long[0].finish_reason == "stop"
    finally:
        rollout.update_weights(state)
    outs = rollout.generate(probe_prompts(1), SamplingParams(n=1, temperature=0.0, max_tokens=6))
    assert outs[0].finish_reason == "length" and len(outs[0].token_ids) == 6


def test_shutdown_leaves_no_engine_processes(pools) -> None:
    """Runs last: the pool's shutdown stops vLLM's engine core and worker processes (a killed actor alone would
    leave them behind as ``VLLM::`` processes)."""
    import psutil
    import ray

    _, rollout = pools
    pid, tmp = ray.get(rollout.engines[0].__ray_call__.remote(lambda self: (os.getpid(), self._tmp_dir)))
    children = psutil.Process(pid).children(recursive=True)
    assert children, "vLLM runs its engine core in child processes"
    assert Path(tmp).is_dir()
    rollout.shutdown()
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [(p.pid, p.name()) for p in alive]
    assert not Path(tmp).exists(), "the engine's temp folder (vLLM sockets, dist-init files) is removed"
