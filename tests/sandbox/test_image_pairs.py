"""Training twins (``sandbox.train_image_pairs``): rows that only the preliminary image tells apart."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from easyr1.config.sandbox import SandboxConfig
from easyr1.sandbox.answers import score_answer
from easyr1.sandbox.generator import generate_row, write_sandbox_splits, write_sft_demonstrations
from easyr1.sandbox.render import render_scene

KINDS = ["misplaced_object", "wrong_exposure"]


def _pair(k: int, seed: int = 2):
    return [
        generate_row(seed, 2 * k + j, defects=KINDS, min_defects=1, max_defects=1, image_pairs=True) for j in (0, 1)
    ]


@pytest.mark.parametrize("k", range(8))
def test_twins_share_text_and_source_and_differ_only_in_the_defect_direction(k):
    a, b = _pair(k)
    assert a.id != b.id
    assert (a.instruction_short, a.instruction_detailed) == (b.instruction_short, b.instruction_detailed)
    assert a.doc.source.to_dict() == b.doc.source.to_dict()
    assert a.text_only_demonstration == b.text_only_demonstration  # a text-only teacher answers both alike
    assert a.defects == b.defects
    offs = [(c.args["off"], d.args["off"]) for c, d in zip(a.doc.intent, b.doc.intent, strict=True)]
    assert all(x != y for x, y in offs)
    assert render_scene(a.doc.scene, 64).tobytes() != render_scene(b.doc.scene, 64).tobytes()
    # each twin's demonstration repairs it and fails its twin: no answer that ignores the image repairs both
    assert score_answer(a.doc, a.demonstration).mean == pytest.approx(10.0)
    assert score_answer(b.doc, b.demonstration).mean == pytest.approx(10.0)
    assert score_answer(b.doc, a.demonstration).mean < 7.0
    assert score_answer(a.doc, b.demonstration).mean < 7.0


def test_pairing_changes_training_rows_only(tmp_path):
    plain = SandboxConfig(train_rows=6, val_rows=4, seed=2, image_size=32, defects=KINDS, max_defects=1)
    paired = SandboxConfig(**{**plain.__dict__, "train_image_pairs": True})
    write_sandbox_splits(tmp_path / "plain", plain)
    write_sandbox_splits(tmp_path / "paired", paired)

    def table(root, split):
        return pq.read_table(root / split / "sandbox_00000.parquet").to_pylist()

    assert table(tmp_path / "plain", "val") == table(tmp_path / "paired", "val")
    train = table(tmp_path / "paired", "train")
    assert [r["edit_prompt"] for r in train[0::2]] == [r["edit_prompt"] for r in train[1::2]]
    assert table(tmp_path / "plain", "train") != train
    demos = [json.loads(line) for line in write_sft_demonstrations(tmp_path / "d.jsonl", paired, mode="text_only")
             .read_text().splitlines()]  # fmt: skip
    assert [d["id"] for d in demos] == [r["omni_edit_id"] for r in train]
    assert [d["response"] for d in demos[0::2]] == [d["response"] for d in demos[1::2]]
