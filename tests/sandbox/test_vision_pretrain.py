"""Vision pretraining of the tiny policy on rendered scenes (``easyr1.sandbox.vision_pretrain``)."""

from __future__ import annotations

import shutil

import pytest
import torch

from easyr1.sandbox import generate_row
from easyr1.sandbox.scene import Scene, SceneObject
from easyr1.sandbox.vision_pretrain import (
    HELD_OUT_SPLIT,
    PRETRAIN_SPLIT,
    position_labels,
    pretrain_scene,
    pretrain_vision_tower,
    scene_rng,
)

PRESET_DEFECTS = ["misplaced_object", "wrong_exposure"]


def test_position_labels_mark_the_buckets_plain_objects_stand_in():
    scene = Scene(seed=1, objects=[SceneObject("tree", "green", 0.5), SceneObject("ball", "red", 0.3)])
    assert position_labels(scene) == [1.0, 0.0, 0.0]  # the tree is not a plain object
    scene.objects.append(SceneObject("box", "blue", 0.7))
    assert position_labels(scene) == [1.0, 0.0, 1.0]
    scene.objects[1].x = 0.5
    assert position_labels(scene) == [0.0, 1.0, 1.0]


def test_pretraining_scenes_never_come_from_a_row_stream():
    for split in ("train", "val", "corpus"):
        with pytest.raises(ValueError, match="own stream"):
            scene_rng(0, 0, split)
    # Same seed and index as a row, a different stream: a different scene.
    for seed in (0, 1, 2):
        rows = [generate_row(seed, i, split=s, defects=PRESET_DEFECTS) for s in ("train", "val") for i in range(64)]
        row_seeds = {r.doc.source.seed for r in rows}
        row_scenes = [scene.to_dict() for r in rows for scene in (r.doc.source, r.doc.scene)]
        for split in (PRETRAIN_SPLIT, HELD_OUT_SPLIT):
            scenes = [pretrain_scene(seed, i, split) for i in range(256)]
            assert not {s.seed for s in scenes} & row_seeds
            assert not [s for s in scenes if s.to_dict() in row_scenes]
    train = {pretrain_scene(0, i).seed for i in range(256)}
    held_out = {pretrain_scene(0, i, HELD_OUT_SPLIT).seed for i in range(256)}
    assert not train & held_out


def test_pretraining_trains_only_the_vision_tower_and_learns_where_objects_stand(tiny_policy_dir, tmp_path):
    from easyr1.models.loading import load_policy

    policy = tmp_path / "policy"
    shutil.copytree(tiny_policy_dir, policy)
    before = {k: v.clone() for k, v in load_policy(policy, dtype="float32").model.state_dict().items()}
    torch.manual_seed(0)
    report = pretrain_vision_tower(policy, 400, seed=0, batch_size=16, lr=5.0e-3, pool=256, held_out=96)
    after = load_policy(policy, dtype="float32").model.state_dict()
    assert after.keys() == before.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    vision = {k for k in before if ".visual." in f".{k}"}
    assert changed, "pretraining changed nothing"
    assert changed <= vision, f"non-vision weights changed: {sorted(changed - vision)[:5]}"
    assert any("merger" in k for k in changed)
    assert report.loss_last < report.loss_first
    # Chance (always the larger bucket) is about 0.38 on one-object scenes of the held-out stream.
    assert report.held_out_position_accuracy > 0.6, report


def test_the_demo_builds_its_policy_with_vision_pretraining_when_asked(tmp_path):
    from easyr1.config import ConfigValidationError, load_config
    from easyr1.models.loading import load_policy
    from easyr1.trainer.demo import build_sandbox_policy, demo_overrides, preset_path, vision_pretraining_of

    weights = {}
    for steps in (0, 5):
        out = tmp_path / f"steps{steps}"
        cfg = load_config(preset_path(), [*demo_overrides(out, None, 0), f"sandbox.vision_pretrain_steps={steps}"])
        assert cfg.sandbox.vision_pretrain_steps == steps
        build_sandbox_policy(cfg, out / "tiny" / "policy", 0)
        weights[steps] = load_policy(out / "tiny" / "policy", dtype="float32").model.state_dict()
    changed = {k for k in weights[0] if not torch.equal(weights[0][k], weights[5][k])}
    assert changed and all(".visual." in f".{k}" for k in changed)
    # the policy folder records its vision pretraining (the demo's summary reads it), and none when it had none
    assert vision_pretraining_of(tmp_path / "steps0" / "tiny" / "policy") is None
    record = vision_pretraining_of(tmp_path / "steps5" / "tiny" / "policy")
    assert record["steps"] == 5 and record["vision_params"] > 0 and 0.0 <= record["held_out_position_accuracy"] <= 1.0
    with pytest.raises(ConfigValidationError, match="vision_pretrain_steps"):
        load_config(preset_path(), ["sandbox.vision_pretrain_steps=-1"])
