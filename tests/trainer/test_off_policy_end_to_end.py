"""``trainer.pipeline: off_policy_1`` with the real pools (Ray, FSDP actor workers, transformers rollout engines,
the sandbox editor and judge) on the tiny policy: the background rollout and the behaviour log-probs run from the
prefetch thread; staleness, stage spans and the PPO ratio show the one-step lag; a run resumed from a checkpoint
taken mid-run (what a kill -9 leaves) continues with the same data and behaviour log-probs as the uninterrupted one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from easyr1.config import load_config
from easyr1.data import build_dataloader
from easyr1.trainer.entry import run_training
from easyr1.trainer.step_metrics import sample_digest

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).parents[2] / "examples" / "sandbox.yaml"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from easyr1.models.tiny import build_tiny_policy
    from easyr1.sandbox.generator import write_sandbox_dataset

    root = tmp_path_factory.mktemp("off-policy-e2e")
    build_tiny_policy(root / "policy", seed=0)
    write_sandbox_dataset(root / "data" / "train", rows=16, seed=0, image_size=32)
    return root


def config(assets: Path, out: Path, *extra: str):
    return load_config(
        EXAMPLE,
        [
            f"data.train_files={assets / 'data' / 'train'}",
            "data.val_files=null",
            f"worker.actor.model.model_path={assets / 'policy'}",
            f"trainer.output_dir={out}",
            "data.rollout_batch_size=2",
            "data.max_response_length=24",
            "worker.actor.global_batch_size=2",
            "worker.actor.micro_batch_size_per_device_for_update=2",
            "worker.actor.micro_batch_size_per_device_for_experience=4",
            "worker.rollout.n=2",
            "trainer.logger=[file]",
            "trainer.val_freq=-1",
            "trainer.val_before_train=false",
            "telemetry.prometheus.enabled=false",
            "trainer.save_freq=1",
            "trainer.save_limit=-1",
            "worker.actor.entropy_coeff=0.05",  # the weights move even when every advantage is 0
            "trainer.pipeline=off_policy_1",
            *extra,
        ],
    )


def rows(out: Path) -> dict[int, dict]:
    found = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {r["step"]: r for r in found if "reward/mean" in r}


def test_off_policy_with_the_real_pools_and_resume(assets, tmp_path):
    full = tmp_path / "full"
    cfg = config(assets, full, "trainer.max_steps=3")
    run_training(cfg)
    got = rows(full)
    assert sorted(got) == [1, 2, 3]
    loader = build_dataloader(cfg.data, "train")
    expected = [sample_digest([r.id for r in batch]) for batch, _ in zip(loader, range(3), strict=False)]
    assert [got[s]["data/digest"] for s in (1, 2, 3)] == expected  # the staged data order
    assert [got[s]["pipeline/staleness_max"] for s in (1, 2, 3)] == [0.0, 1.0, 1.0]
    # The PPO ratio of one optimizer step per update (the entropy bonus moves the weights): on-policy at step 1
    # (numerical noise only), one update behind from step 2 on (the behaviour log-probs were computed before the
    # previous update).
    assert abs(got[1]["actor/ppo_kl"]) < 1e-5
    assert abs(got[2]["actor/ppo_kl"]) > 10 * max(abs(got[1]["actor/ppo_kl"]), 1e-7)
    spans = [json.loads(line) for line in (full / "stage_spans.jsonl").read_text().splitlines()]
    assert [s["step"] for s in spans] == [1, 2, 3]
    assert {("rollout", 2), ("old_logprob", 2)} <= {(s["stage"], s["for_step"]) for s in spans[0]["spans"]}
    assert (full / "checkpoints" / "global_step_2" / "inflight.pt").is_file()
    assert not (full / "checkpoints" / "global_step_3" / "inflight.pt").exists()  # nothing after the last step

    # What a kill -9 right after step 2's checkpoint leaves on disk: that checkpoint alone (its in-flight batch is
    # step 3's). A new driver, Ray and pools resume from it (resume: auto): step 3 trains on the saved batch.
    part = tmp_path / "part"
    shutil.copytree(full / "checkpoints" / "global_step_2", part / "checkpoints" / "global_step_2")
    run_training(config(assets, part, "trainer.max_steps=3"))
    again = rows(part)
    assert sorted(again) == [3] and again[3]["data/digest"] == expected[2]
    assert again[3]["pipeline/staleness_max"] == 1.0
    assert again[3]["actor/ppo_kl"] == pytest.approx(got[3]["actor/ppo_kl"], rel=1e-4, abs=1e-9)
    assert again[3]["reward/mean"] == pytest.approx(got[3]["reward/mean"], nan_ok=True)


def test_off_policy_with_the_engines_log_probs(assets, tmp_path):
    """``trainer.behaviour_log_probs: rollout`` with the real pools: the transformers engines' own log-probs (fp32
    on CPU, temperature 1) are the PPO's old log-probs; no actor log-prob pass in any step; on-policy at step 1 the
    ratio starts at 1 up to the numerical difference between generation and the training forward."""
    out = tmp_path / "rollout-lp"
    run_training(config(assets, out, "trainer.max_steps=3", "trainer.behaviour_log_probs=rollout"))
    got = rows(out)
    assert sorted(got) == [1, 2, 3]
    assert [got[s]["pipeline/staleness_max"] for s in (1, 2, 3)] == [0.0, 1.0, 1.0]
    assert abs(got[1]["actor/ppo_kl"]) < 1e-4
    assert abs(got[2]["actor/ppo_kl"]) > 10 * max(abs(got[1]["actor/ppo_kl"]), 1e-7)
    spans = [s for line in (out / "stage_spans.jsonl").read_text().splitlines() for s in json.loads(line)["spans"]]
    stages = {(s["stage"], s["for_step"]) for s in spans}
    assert {("rollout", 2), ("rollout", 3), ("update", 1), ("update", 2)} <= stages
    assert not [s for s in spans if s["stage"] == "old_logprob"]
    assert (out / "checkpoints" / "global_step_2" / "inflight.pt").is_file()
