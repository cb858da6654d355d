"""Each format read into EditSamples: seed parquet, JSONL with image paths, HF datasets (disk and parquet)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from easyr1.data import DataError, build_dataset
from easyr1.data.rows import parse_instruction


def read_all(cfg):
    dataset = build_dataset(cfg, "train")
    return [s for _, s in dataset.iter_epoch(0)], dataset


@pytest.mark.parametrize(
    ("value", "variant", "expected"),
    [
        (["short one", "detailed one"], "detailed", ("detailed one", "short one", "detailed one")),
        (["short one", "detailed one"], "short", ("short one", "short one", "detailed one")),
        ("['short one', 'detailed one']", "detailed", ("detailed one", "short one", "detailed one")),
        ('["a", "b"]', "short", ("a", "a", "b")),
        ("  just one instruction ", "short", ("just one instruction", None, None)),
        (["only"], "detailed", ("only", None, None)),
    ],
)
def test_instruction_forms(value, variant, expected):
    assert parse_instruction(value, "edit_prompt", variant) == expected


def test_seed_parquet_rows_and_metadata(tmp_path, helpers):
    rows = helpers.seed_rows(5, scene='{"objects": 3}', defect="shadow_side")
    helpers.write_seed_parquet(rows, tmp_path / "part-0.parquet")
    samples, dataset = read_all(helpers.data_config(tmp_path / "part-0.parquet", shuffle=False))
    assert [s.id for s in samples] == [f"row-{i}" for i in range(5)]
    first = samples[0]
    assert first.task == "remove"
    assert first.instruction == "detailed instruction 0"
    assert (first.instruction_short, first.instruction_detailed) == ("short 0", "detailed instruction 0")
    assert first.source_image.tobytes() == helpers.make_image(0).tobytes()
    assert first.edited_image.tobytes() == helpers.make_image(1).tobytes()
    assert first.metadata == {"width": 48, "height": 32, "scene": '{"objects": 3}', "defect": "shadow_side"}
    assert first.origin.endswith("part-0.parquet:0")
    assert first.source_original_size == (48, 32)
    assert dataset.stats.rows_read == 5 and not dataset.stats.bad_rows


def test_seed_folder_with_pattern_and_row_groups(tmp_path, helpers):
    helpers.write_seed_parquet(helpers.seed_rows(7, 0), tmp_path / "batch_0.parquet", row_group_size=3)
    helpers.write_seed_parquet(helpers.seed_rows(4, 7), tmp_path / "batch_1.parquet", row_group_size=2)
    helpers.write_seed_parquet(helpers.seed_rows(2, 100), tmp_path / "other.parquet")
    samples, dataset = read_all(helpers.data_config(tmp_path, pattern="batch_*.parquet", shuffle=False))
    assert [s.id for s in samples] == [f"row-{i}" for i in range(11)]
    assert [u.num_rows for u in dataset.source.units] == [3, 3, 1, 2, 2]
    assert samples[8].origin.endswith("batch_1.parquet:1")


def test_seed_instruction_variant_and_string_forms(tmp_path, helpers):
    rows = helpers.seed_rows(3)
    rows[0]["edit_prompt"] = "['s0', 'd0']"
    rows[1]["edit_prompt"] = "plain instruction"
    rows[2]["edit_prompt"] = "['s2', 'd2']"
    helpers.write_seed_parquet(rows, tmp_path / "x.parquet")
    samples, _ = read_all(helpers.data_config(tmp_path / "x.parquet", shuffle=False, instruction_variant="short"))
    assert [s.instruction for s in samples] == ["s0", "plain instruction", "s2"]


def test_images_are_fitted_to_the_pixel_range(tmp_path, helpers):
    helpers.write_seed_parquet(helpers.seed_rows(2, size=(100, 50)), tmp_path / "x.parquet")
    cfg = helpers.data_config(tmp_path / "x.parquet", shuffle=False, min_pixels=100, max_pixels=1250)
    samples, _ = read_all(cfg)
    for s in samples:
        w, h = s.source_image.size
        assert w * h <= 1250 and abs(w / h - 2) < 0.1
        assert s.source_original_size == (100, 50)
    cfg = helpers.data_config(tmp_path / "x.parquet", shuffle=False, min_pixels=20000, max_pixels=40000)
    samples, _ = read_all(cfg)
    w, h = samples[0].edited_image.size
    assert w * h >= 20000 and abs(w / h - 2) < 0.1


def test_jsonl_with_relative_paths(tmp_path, helpers):
    path = helpers.write_jsonl(tmp_path, 4)
    samples, _ = read_all(helpers.data_config(path, format="jsonl", shuffle=False))
    assert [s.id for s in samples] == [f"row-{i}" for i in range(4)]
    assert samples[2].source_image.tobytes() == helpers.make_image(4).tobytes()
    assert samples[2].edited_image.tobytes() == helpers.make_image(5).tobytes()
    assert samples[2].instruction == "instruction 2"
    assert samples[2].task == ""
    assert samples[2].metadata == {"scene": {"objects": 2}}
    assert samples[2].origin.endswith("rows.jsonl:3")  # line numbers for JSONL


def test_jsonl_folder_default_pattern_and_custom_keys(tmp_path, helpers):
    helpers.write_jsonl(tmp_path, 2, "a.jsonl", 0)
    helpers.write_jsonl(tmp_path, 3, "b.jsonl", 2)
    samples, _ = read_all(helpers.data_config(tmp_path, format="jsonl", shuffle=False))
    assert [s.id for s in samples] == [f"row-{i}" for i in range(5)]
    text = (tmp_path / "a.jsonl").read_text().replace('"instruction"', '"prompt"').replace('"id"', '"uid"')
    (tmp_path / "a.jsonl").write_text("\n\n" + text)  # blank lines are not records
    cfg = helpers.data_config(
        tmp_path / "a.jsonl", format="jsonl", shuffle=False, instruction_key="prompt", id_key="uid"
    )
    samples, _ = read_all(cfg)
    assert [s.id for s in samples] == ["row-0", "row-1"]
    assert samples[0].origin.endswith("a.jsonl:3")


def _hf_dataset(helpers, n, start=0):
    import datasets

    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "instruction": datasets.Sequence(datasets.Value("string")),
            "source_image": datasets.Image(),
            "edited_image": datasets.Image(),
            "task": datasets.Value("string"),
            "difficulty": datasets.Value("int32"),
        }
    )
    return datasets.Dataset.from_dict(
        {
            "id": [f"row-{i}" for i in range(start, start + n)],
            "instruction": [[f"s{i}", f"d{i}"] for i in range(start, start + n)],
            "source_image": [helpers.make_image(2 * i) for i in range(start, start + n)],
            "edited_image": [helpers.make_image(2 * i + 1) for i in range(start, start + n)],
            "task": ["add"] * n,
            "difficulty": list(range(n)),
        },
        features=features,
    )


def test_hf_saved_dataset_and_dataset_dict(tmp_path, helpers):
    import datasets

    _hf_dataset(helpers, 3).save_to_disk(str(tmp_path / "single"))
    samples, _ = read_all(helpers.data_config(tmp_path / "single", format="hf", shuffle=False))
    assert [s.id for s in samples] == ["row-0", "row-1", "row-2"]
    assert samples[1].source_image.tobytes() == helpers.make_image(2).tobytes()
    assert samples[1].instruction == "d1" and samples[1].task == "add"
    assert samples[1].metadata == {"difficulty": 1}

    datasets.DatasetDict({"train": _hf_dataset(helpers, 2), "validation": _hf_dataset(helpers, 2, 10)}).save_to_disk(
        str(tmp_path / "dict")
    )
    cfg = helpers.data_config(tmp_path / "dict", format="hf", val_files=str(tmp_path / "dict"), shuffle=False)
    assert [s.id for _, s in build_dataset(cfg, "val").iter_epoch(0)] == ["row-10", "row-11"]
    assert [s.id for _, s in build_dataset(cfg, "train").iter_epoch(0)] == ["row-0", "row-1"]
    with pytest.raises(DataError, match="no split 'test'"):
        build_dataset(helpers.data_config(tmp_path / "dict", format="hf", train_split="test"), "train")


def test_hf_parquet_with_image_features(tmp_path, helpers):
    _hf_dataset(helpers, 4).to_parquet(str(tmp_path / "hf.parquet"))
    samples, _ = read_all(helpers.data_config(tmp_path / "hf.parquet", format="hf", shuffle=False))
    assert [s.id for s in samples] == [f"row-{i}" for i in range(4)]
    assert samples[3].edited_image.tobytes() == helpers.make_image(7).tobytes()


def test_hf_image_given_as_path_relative_to_dataset(tmp_path, helpers):
    helpers.make_image(0).save(tmp_path / "a.png")
    helpers.make_image(1).save(tmp_path / "b.png")
    table = pa.table(
        {
            "id": ["x"],
            "instruction": ["fix it"],
            "source_image": [{"bytes": None, "path": "a.png"}],
            "edited_image": ["b.png"],
        }
    )
    pq.write_table(table, tmp_path / "rows.parquet")
    samples, _ = read_all(helpers.data_config(tmp_path / "rows.parquet", format="hf", shuffle=False))
    assert samples[0].source_image.tobytes() == helpers.make_image(0).tobytes()
    assert samples[0].edited_image.tobytes() == helpers.make_image(1).tobytes()


def test_missing_data_is_a_clear_error(tmp_path, helpers):
    with pytest.raises(DataError, match="no such file or folder"):
        build_dataset(helpers.data_config(tmp_path / "nope"), "train")
    with pytest.raises(DataError, match="no files match"):
        build_dataset(helpers.data_config(tmp_path), "train")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match=r"broken\.parquet: not a readable parquet file"):
        build_dataset(helpers.data_config(tmp_path), "train")
    with pytest.raises(DataError, match="val_files is not set"):
        build_dataset(helpers.data_config(tmp_path), "val")
