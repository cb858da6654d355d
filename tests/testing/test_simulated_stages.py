"""The simulated stages of the pipeline benchmark: latencies honoured, outputs valid and deterministic, busy
intervals recorded, the busy/overlap arithmetic, and the engine and actor pool running as Ray actors behind the
real rollout pool."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from easyr1.core.registries import ENGINES
from easyr1.core.types import EditRequest, PolicyPrompt, SamplingParams
from easyr1.reward import FormatRule, parse_response
from easyr1.rollout.protocol import RolloutEngine
from easyr1.testing.simulated_stages import (
    ENGINE_NAME,
    TOKEN_OFFSET,
    RecordingEditor,
    SimulatedRolloutEngine,
    simulated_output,
    token_log_probs,
)
from easyr1.testing.stage_records import measured_staleness, read_intervals


def _prompts(n: int) -> list[PolicyPrompt]:
    return [PolicyPrompt(f"row-{i}", [{"role": "user", "content": "fix it"}], []) for i in range(n)]


def test_outputs_are_valid_answers_deterministic_and_distinct() -> None:
    sampling = SamplingParams(n=4, max_tokens=256, seed=7)
    a = [simulated_output("row-1", k, sampling, version=0) for k in range(4)]
    b = [simulated_output("row-1", k, sampling, version=0) for k in range(4)]
    assert [(o.text, o.token_ids, o.logprobs) for o in a] == [(o.text, o.token_ids, o.logprobs) for o in b]
    assert len({o.text for o in a}) == 4  # every sample a different edit: none collapsed by the editor pool
    for out in a:
        parsed = parse_response(out.text)
        assert parsed.ok and parsed.instruction  # the editor gets an instruction
        assert out.token_ids == [c + TOKEN_OFFSET for c in out.text.encode()]
        assert len(out.logprobs) == len(out.token_ids) and all(lp < 0 for lp in out.logprobs)
        assert out.finish_reason == "stop"
    assert FormatRule().score(a[0].text) > 0
    other_seed = simulated_output("row-1", 0, SamplingParams(n=4, seed=8), version=0)
    assert other_seed.logprobs != a[0].logprobs
    cut = simulated_output("row-1", 0, SamplingParams(n=1, max_tokens=10, seed=7), version=0)
    assert len(cut.token_ids) == 10 and cut.finish_reason == "length"


def test_engine_latency_grouping_versions_and_records(tmp_path: Path) -> None:
    engine = SimulatedRolloutEngine("unused", engine_index=1, seconds_per_prompt=0.05, sync_s=0.1, record_dir=tmp_path)
    assert isinstance(engine, RolloutEngine)
    sampling = SamplingParams(n=3, seed=1)
    start = time.monotonic()
    outs = engine.generate(_prompts(4), sampling)
    assert time.monotonic() - start >= 0.2
    assert [(o.prompt_id, o.sample_index) for o in outs] == [(f"row-{i}", k) for i in range(4) for k in range(3)]
    assert {o.extra["weights_version"] for o in outs} == {0}
    start = time.monotonic()
    engine.update_weights({"version": torch.tensor(5)})
    assert time.monotonic() - start >= 0.1
    again = engine.generate(_prompts(1), sampling)
    assert again[0].extra["weights_version"] == 5
    assert again[0].text == outs[0].text  # same seed and ids: the split over engines and calls changes nothing
    gen, sync, gen2 = read_intervals(tmp_path)
    assert (gen.pool, gen.member, gen.kind) == ("rollout", "engine1", "generate")
    assert gen.end - gen.start >= 0.2 and gen.info["prompt_ids"] == [f"row-{i}" for i in range(4)]
    assert sync.kind == "sync" and sync.info["version"] == 5 and sync.end - sync.start >= 0.1
    assert gen2.info["version"] == 5
    with pytest.raises(NotImplementedError, match="object_store"):
        engine.init_weight_sync("127.0.0.1", 1, 1, 2, "gloo")


def test_engine_is_registered_and_reads_its_settings() -> None:
    assert ENGINE_NAME in ENGINES.names()
    assert ENGINES.load(ENGINE_NAME) is SimulatedRolloutEngine
    saved = SimulatedRolloutEngine.settings
    try:
        from easyr1.testing.simulated_stages import EngineSettings

        SimulatedRolloutEngine.settings = EngineSettings(seconds_per_prompt=0.5, sync_s=0.25, record_dir="/x")
        kwargs = SimulatedRolloutEngine.engine_kwargs(None, device="cpu", threads=1)  # type: ignore[arg-type]
        assert kwargs == {"seconds_per_prompt": 0.5, "sync_s": 0.25, "record_dir": "/x"}
    finally:
        SimulatedRolloutEngine.settings = saved


def test_recording_editor_latency_per_image_and_intervals(tmp_path: Path) -> None:
    editor = RecordingEditor(0.05, tmp_path, member="r0")
    requests = [EditRequest(Image.new("RGB", (8, 8)), f"move {i}", i, f"k{i}") for i in range(4)]
    start = time.monotonic()
    results = editor.edit(requests)
    assert time.monotonic() - start >= 0.2
    assert all(r.ok and r.image is not None for r in results)
    (iv,) = read_intervals(tmp_path)
    assert (iv.pool, iv.member, iv.kind, iv.info["images"]) == ("editor", "r0", "edit", 4)
    assert iv.end - iv.start >= 0.2


def test_token_log_probs_shape_and_padding() -> None:
    lp = token_log_probs([[5, 6, 7], [9]], width=4, version=2)
    assert lp.shape == (2, 4)
    assert (lp[0, :3] < 0).all() and lp[0, 3] == 0 and (lp[1, 1:] == 0).all()
    assert not torch.equal(lp, token_log_probs([[5, 6, 7], [9]], width=4, version=3))  # the weights matter


@pytest.mark.slow
def test_actor_pool_and_rollout_pool_on_ray(tmp_path: Path) -> None:
    import ray

    from easyr1.actor.batch import PolicyBatch
    from easyr1.config import load_config
    from easyr1.rollout.pool import RolloutPool
    from easyr1.testing.simulated_stages import EngineSettings, SimulatedActorPool
    from easyr1.trainer.contracts import TrainingActor

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    saved = SimulatedRolloutEngine.settings
    SimulatedRolloutEngine.settings = EngineSettings(seconds_per_prompt=0.1, sync_s=0.2, record_dir=str(tmp_path))
    actor = pool = None
    try:
        actor = SimulatedActorPool(num_workers=2, update_s=0.3, record_dir=tmp_path)
        assert isinstance(actor, TrainingActor)
        cfg = load_config(
            None,
            [
                f"worker.rollout.name={ENGINE_NAME}",
                "worker.rollout.num_engines=2",
                "worker.rollout.weight_sync=object_store",
                "worker.rollout.check_sync_logprobs=false",
                "cluster.rollout.num_cpus_per_worker=0.25",
            ],
        )
        pool = RolloutPool(cfg)
        prompts = _prompts(4)
        start = time.monotonic()
        outs = pool.generate(prompts, SamplingParams(n=2, seed=3))
        assert time.monotonic() - start >= 0.2  # 2 prompts per engine, 0.1 s each, engines in parallel
        assert [o.text for o in outs] == [
            o.text
            for o in (simulated_output(p.id, k, SamplingParams(n=2, seed=3), 0) for p in prompts for k in range(2))
        ]
        batch = PolicyBatch(prompts=[prompts[i // 2] for i in range(8)], responses=[o.token_ids for o in outs])
        old = actor.compute_log_probs(batch)
        assert old.shape == (8, batch.max_response_length)
        assert torch.equal(old, token_log_probs(batch.responses, batch.max_response_length, 0))
        start = time.monotonic()
        metrics = actor.update_policy(batch.with_fields(advantages=torch.arange(8.0), old_log_probs=old))
        assert time.monotonic() - start >= 0.3
        assert metrics["actor/version"] == 1.0 and metrics["actor/pg_loss"] < 0
        assert metrics["actor/ratio_mean"] == pytest.approx(1.0)  # old log-probs from the same weights
        stale = actor.update_policy(batch.with_fields(advantages=torch.ones(8), old_log_probs=old))
        assert stale["actor/ratio_mean"] != pytest.approx(1.0)  # old log-probs of version 0, weights now 1
        assert stale["actor/version"] == 2.0
        sync = pool.sync_weights(actor)
        assert sync["rollout/sync_time_s"] >= 0.2
        after = pool.generate(prompts[:2], SamplingParams(n=1, seed=3))
        assert {o.extra["weights_version"] for o in after} == {2}
        actor.save_checkpoint(str(tmp_path / "ckpt"))
        actor.update_policy(batch.with_fields(advantages=torch.ones(8), old_log_probs=old))
        actor.load_checkpoint(str(tmp_path / "ckpt"))
        assert int(ray.get(actor.full_state_dict_ref())["version"]) == 2
        intervals = read_intervals(tmp_path)
        kinds = {(iv.pool, iv.kind) for iv in intervals}
        assert {("rollout", "generate"), ("rollout", "sync"), ("actor", "update"), ("actor", "old_logprob")} <= kinds
        updates = [iv for iv in intervals if iv.kind == "update"]
        assert {iv.member for iv in updates} == {"rank0", "rank1"}  # both ranks took their share
        assert all(iv.end - iv.start >= 0.3 for iv in updates)
        assert sorted(p for iv in updates[:2] for p in iv.info["prompt_ids"]) == sorted(p.id for p in batch.prompts)
        # all 8 generated at version 0 and updated at 0 and at 1; after the sync rows 0-1 regenerated at 2, so the
        # third update (at 2) trains rows 0-1 fresh and rows 2-3 from version 0
        assert measured_staleness(intervals) == {"0": 8 + 4, "1": 8, "2": 4}
    finally:
        SimulatedRolloutEngine.settings = saved
        if pool is not None:
            pool.shutdown()
        if actor is not None:
            actor.close()
        ray.shutdown()
