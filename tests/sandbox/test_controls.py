"""The learning benchmark's controls and evaluation helpers: shuffled judge, blanked images, repair accounting."""

from __future__ import annotations

import base64
import io

import pyarrow.parquet as pq
import pytest
from PIL import Image

from easyr1.config import JudgeConfig
from easyr1.reward.judge import build_judge
from easyr1.reward.judge.protocol import JudgeRequest
from easyr1.sandbox import SandboxJudge, generate_row, score_preliminary, write_sandbox_dataset
from easyr1.sandbox.controls import SHUFFLE_ENV, ShufflingJudge, blank_images_in_folder
from easyr1.sandbox.evaluate import fixed_defects, score_row
from easyr1.sandbox.generator import write_sft_demonstrations


def _requests(split: str, n: int) -> list[JudgeRequest]:
    img = Image.new("RGB", (8, 8))
    rows = [generate_row(3, i, split=split) for i in range(n)]
    return [JudgeRequest(img, img, "x", key=f"{row.id}/0", metadata={"scene_json": row.doc.to_json()}) for row in rows]


def test_build_judge_shuffles_only_when_the_control_is_on(monkeypatch):
    monkeypatch.delenv(SHUFFLE_ENV, raising=False)
    assert type(build_judge(JudgeConfig(backend="sandbox"))) is SandboxJudge
    monkeypatch.setenv(SHUFFLE_ENV, "7")
    assert isinstance(build_judge(JudgeConfig(backend="sandbox")), ShufflingJudge)
    monkeypatch.setenv(SHUFFLE_ENV, "seven")
    with pytest.raises(ValueError, match=SHUFFLE_ENV):
        build_judge(JudgeConfig(backend="sandbox"))


def test_shuffling_judge_permutes_training_results_and_leaves_validation_alone():
    train, val = _requests("train", 12), _requests("val", 12)
    plain = SandboxJudge()
    judge = ShufflingJudge(SandboxJudge(), seed=0)
    truth = [r.scores for r in plain.score_batch(train)]
    got = [r.scores for r in judge.score_batch(train)]
    assert sorted(map(str, got)) == sorted(map(str, truth))  # same multiset of results ...
    assert got != truth  # ... handed to other answers
    assert [r.scores for r in judge.score_batch(val)] == [r.scores for r in plain.score_batch(val)]


def test_blank_images_keeps_sizes_and_scenes(tmp_path):
    write_sandbox_dataset(tmp_path, 4, seed=1, image_size=32)
    before = pq.read_table(next(tmp_path.glob("*.parquet"))).to_pylist()
    assert blank_images_in_folder(tmp_path) == 4
    after = pq.read_table(next(tmp_path.glob("*.parquet"))).to_pylist()
    for old, new in zip(before, after, strict=True):
        assert new["scene_json"] == old["scene_json"] and new["demonstration"] == old["demonstration"]
        for column in ("src_img_b64", "qwen_edited_img_b64"):
            image = Image.open(io.BytesIO(base64.b64decode(new[column])))
            assert image.size == (32, 32)
            assert image.getextrema() == ((128, 128),) * 3


def test_repair_accounting():
    row = generate_row(0, 3, max_defects=3, min_defects=2)
    meta = {"scene_json": row.doc.to_json(), "defects": row.defects}
    nothing = score_row(meta, "", 0.0, row.id)
    assert not nothing.repaired and not any(nothing.fixed.values())
    assert nothing.judge_mean == pytest.approx(score_preliminary(meta).mean)
    full = score_row(meta, row.demonstration, 5.0, row.id)
    assert full.repaired and full.judge_mean == pytest.approx(10.0)
    partial = score_row(meta, row.partial_demonstration, 5.0, row.id)
    assert partial.fixed[row.defects[0]] and not partial.repaired
    assert nothing.judge_mean < partial.judge_mean < full.judge_mean
    assert fixed_defects(["sun_at_night"], {"sun_at_night"}) == {"sun_at_night": False}


def test_sft_demonstrations_first_defect(tmp_path):
    from easyr1.config import SandboxConfig

    cfg = SandboxConfig(train_rows=6, seed=2)
    lines = write_sft_demonstrations(tmp_path / "d.jsonl", cfg).read_text().splitlines()
    rows = [generate_row(2, i) for i in range(6)]
    import json

    got = [json.loads(line) for line in lines]
    assert [g["id"] for g in got] == [r.id for r in rows]
    assert [g["response"] for g in got] == [r.partial_demonstration for r in rows]
    assert any(g["response"] != r.demonstration for g, r in zip(got, rows, strict=True))
