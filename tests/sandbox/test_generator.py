from __future__ import annotations

import argparse
import base64
import collections
import io
import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from easyr1.config.sandbox import IMAGE_ONLY_DEFECTS, SANDBOX_DEFECTS, SandboxConfig
from easyr1.reward import format_score
from easyr1.sandbox import (
    CATALOGUE,
    SceneDoc,
    corpus_texts,
    generate_row,
    render_scene,
    score_answer,
    score_preliminary,
    write_sandbox_dataset,
    write_sandbox_splits,
)
from easyr1.sandbox.cli import make_sandbox_data_command

SEED_TYPES = {
    "omni_edit_id": pa.string(),
    "task": pa.string(),
    "width": pa.int64(),
    "height": pa.int64(),
    "src_img_b64": pa.string(),
    "edit_prompt": pa.list_(pa.string()),
    "qwen_edited_img_b64": pa.string(),
}
EXTRA_TYPES = {"scene_json": pa.string(), "defects": pa.list_(pa.string()), "demonstration": pa.string()}


def _decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("sandbox")
    paths = write_sandbox_dataset(out, rows=25, seed=4, image_size=64, rows_per_file=10)
    return out, paths


def test_files_and_seed_columns(dataset):
    out, paths = dataset
    assert [p.name for p in paths] == ["sandbox_00000.parquet", "sandbox_00001.parquet", "sandbox_00002.parquet"]
    assert [pq.read_metadata(p).num_rows for p in paths] == [10, 10, 5]
    schema = pq.read_schema(paths[0])
    assert schema.names[:7] == list(SEED_TYPES)
    for name, typ in {**SEED_TYPES, **EXTRA_TYPES}.items():
        assert schema.field(name).type == typ, name
    assert not list(out.glob("*.tmp"))


def test_row_contents(dataset):
    _, paths = dataset
    table = pq.read_table(paths[0]).to_pylist()
    ids = [r["omni_edit_id"] for r in table]
    assert len(set(ids)) == len(ids)
    for rec in table:
        assert rec["task"].startswith("sandbox:")
        assert (rec["width"], rec["height"]) == (64, 64)
        src, prelim = _decode(rec["src_img_b64"]), _decode(rec["qwen_edited_img_b64"])
        assert src.format == "PNG" and src.size == (64, 64) and prelim.size == (64, 64)
        short, detailed = rec["edit_prompt"]
        assert short and detailed and len(detailed) > len(short)
        doc = SceneDoc.from_json(rec["scene_json"])
        assert doc.stage == "preliminary" and doc.defects == rec["defects"]
        assert set(rec["defects"]) <= set(SANDBOX_DEFECTS)
        assert prelim.convert("RGB").tobytes() == render_scene(doc.scene, 64).tobytes()
        assert src.convert("RGB").tobytes() == render_scene(doc.source, 64).tobytes()
        assert score_answer(rec, rec["demonstration"]).mean == 10.0
        assert score_preliminary(rec).mean < 9.0


def test_generation_is_deterministic_and_independent_of_row_count(tmp_path):
    a = write_sandbox_dataset(tmp_path / "a", rows=6, seed=9, rows_per_file=6)
    b = write_sandbox_dataset(tmp_path / "b", rows=3, seed=9, rows_per_file=2)
    rows_a = pq.read_table(a[0]).to_pylist()
    rows_b = [r for p in b for r in pq.read_table(p).to_pylist()]
    assert rows_a[:3] == rows_b
    c = write_sandbox_dataset(tmp_path / "c", rows=3, seed=10, rows_per_file=3)
    assert pq.read_table(c[0]).to_pylist() != rows_b


def test_rewriting_a_folder_replaces_the_old_files(tmp_path):
    write_sandbox_dataset(tmp_path, rows=5, seed=0, rows_per_file=1)
    paths = write_sandbox_dataset(tmp_path, rows=2, seed=0, rows_per_file=1)
    assert sorted(tmp_path.glob("sandbox_*.parquet")) == paths


@pytest.mark.parametrize("bad", [dict(rows=0), dict(rows=2, rows_per_file=0), dict(rows=2, image_size=4)])
def test_bad_arguments(tmp_path, bad):
    with pytest.raises(ValueError):
        write_sandbox_dataset(tmp_path, **bad)


def test_splits_differ(tmp_path):
    cfg = SandboxConfig(train_rows=5, val_rows=3, seed=2, image_size=48)
    out = write_sandbox_splits(tmp_path, cfg)
    train = pq.read_table(out["train"][0]).to_pylist()
    val = pq.read_table(out["val"][0]).to_pylist()
    assert len(train) == 5 and len(val) == 3 and train[0]["width"] == 48
    assert not {r["omni_edit_id"] for r in train} & {r["omni_edit_id"] for r in val}
    assert {r["scene_json"] for r in train}.isdisjoint({r["scene_json"] for r in val})


def test_defect_filter_and_counts():
    for i in range(40):
        row = generate_row(1, i, defects=["floating_object", "sun_at_night"], min_defects=2, max_defects=2)
        assert sorted(row.defects) == ["floating_object", "sun_at_night"]
    counts = collections.Counter(len(generate_row(1, i, min_defects=1, max_defects=3).defects) for i in range(90))
    assert set(counts) == {1, 2, 3}
    with pytest.raises(ValueError, match="unknown defect"):
        generate_row(0, 0, defects=["melting_clock"])
    with pytest.raises(ValueError, match="min_defects"):
        generate_row(0, 0, min_defects=3, max_defects=2)


def test_every_kind_appears_and_exclusive_kinds_never_meet(mixed_rows):
    seen = collections.Counter(name for r in mixed_rows for name in r.defects)
    assert set(seen) == set(CATALOGUE) - set(IMAGE_ONLY_DEFECTS)  # image-only kinds only when named
    for row in mixed_rows:
        groups = [CATALOGUE[n].group for n in row.defects if CATALOGUE[n].group]
        assert len(groups) == len(set(groups)), row.defects


BLOCK_LINE = re.compile(r"^<(CoT|Re_edit)>[^<>\n]+</\1>$")


def test_demonstrations_follow_the_strict_format(mixed_rows):
    for row in mixed_rows:
        lines = row.demonstration.split("\n")
        assert all(BLOCK_LINE.match(line) for line in lines), row.demonstration
        kinds = [BLOCK_LINE.match(line).group(1) for line in lines]
        assert kinds[0] == "CoT" and "Re_edit" in kinds
        assert kinds == sorted(kinds, key=lambda k: k != "CoT")  # CoT lines first, then Re_edit lines
        assert all(len(r) <= 50 for r in row.re_edits)
        assert sum(len(r) for r in row.re_edits) <= 100
        assert format_score(row.demonstration, mode="strict") == 5.0
        assert format_score(row.demonstration, mode="seed") == 5.0


def test_wording_varies(single_defect_rows):
    for name, rows in single_defect_rows.items():
        answers = {r.demonstration for r in rows}
        instructions = {r.instruction_detailed for r in rows}
        assert len(answers) >= 3 and len(instructions) >= 5, name


def test_instruction_names_what_the_fix_needs(mixed_rows):
    """Learnability: the words a repair needs (objects, colours, festivals) are in the detailed instruction."""
    vocab = set()
    for row in mixed_rows:
        text = row.instruction_detailed.lower()
        for line in row.re_edits:
            for word in re.findall(r"[a-z]+", line.lower()):
                if word in {"box", "ball", "cone", "red", "green", "blue", "yellow", "purple", "orange"}:
                    assert word in text, (row.id, line)
        vocab |= set(re.findall(r"[a-z]+", (row.instruction_detailed + " " + row.demonstration).lower()))
    assert len(vocab) < 250  # a small vocabulary


def test_corpus_texts():
    texts = corpus_texts(rows=5)
    assert len(texts) == 15 and all(texts)


def test_make_sandbox_data_command(tmp_path, capsys):
    args = argparse.Namespace(out=str(tmp_path / "d"), rows=7, seed=3, image_size=64, rows_per_file=4)
    assert make_sandbox_data_command(args) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["rows"] == 7 and len(summary["files"]) == 2
    assert summary["demonstration_mean"] == 10.0 and summary["do_nothing_mean"] < 9.0
    bad = argparse.Namespace(out=str(tmp_path / "e"), rows=0, seed=3, image_size=64, rows_per_file=4)
    assert make_sandbox_data_command(bad) == 2


def test_config_validation():
    from easyr1.config import load_config

    with pytest.raises(ValueError, match=r"sandbox\.defects\[0\]"):
        load_config(None, ["sandbox.defects=[melting_clock]"])
    with pytest.raises(ValueError, match=r"sandbox\.max_defects"):
        load_config(None, ["sandbox.min_defects=3", "sandbox.max_defects=2"])
    cfg = load_config(None, ["sandbox.defects=[sun_at_night]", "sandbox.max_defects=1"])
    assert cfg.sandbox.defects == ["sun_at_night"]


def test_dataset_reader_round_trip(dataset):
    from easyr1 import data
    from easyr1.config.data import DataConfig

    out, _ = dataset
    ds = data.build_dataset(DataConfig(train_files=str(out), shuffle=False, instruction_variant="detailed"), "train")
    samples = [s for _, s in ds.iter_epoch(0, 0)]
    assert len(samples) == 25
    rows = [r for p in sorted(out.glob("sandbox_*.parquet")) for r in pq.read_table(p).to_pylist()]
    for sample, rec in zip(samples, rows, strict=True):
        assert sample.id == rec["omni_edit_id"] and sample.task == rec["task"]
        assert sample.instruction == rec["edit_prompt"][1]
        assert (sample.instruction_short, sample.instruction_detailed) == tuple(rec["edit_prompt"])
        assert sample.source_image.size == (64, 64) and sample.edited_image.size == (64, 64)
        assert sample.metadata["scene_json"] == rec["scene_json"]
        assert list(sample.metadata["defects"]) == rec["defects"]
        assert score_answer(sample.metadata, sample.metadata["demonstration"]).mean == 10.0
