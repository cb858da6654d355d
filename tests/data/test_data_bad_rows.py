"""Every kind of bad row, in both modes: ``error`` names file, row and column; ``skip`` skips and counts."""

from __future__ import annotations

import base64
import json
import logging

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from easyr1.data import BadRowError, build_dataset
from easyr1.data.errors import LOGGED_BAD_ROWS

BAD_INDEX = 2


def _seed_case(kind):
    """(column, reason, mutate(row)) for a bad seed row."""
    text_b64 = base64.b64encode(b"just some text, no pixels").decode()
    return {
        "undecodable_base64": ("src_img_b64", lambda r: r.update(src_img_b64="@@not*base64@@")),
        "not_an_image": ("qwen_edited_img_b64", lambda r: r.update(qwen_edited_img_b64=text_b64)),
        "zero_size_image": ("src_img_b64", lambda r: r.update(src_img_b64="")),
        "missing_value": ("qwen_edited_img_b64", lambda r: r.update(qwen_edited_img_b64=None)),
        "empty_instruction": ("edit_prompt", lambda r: r.update(edit_prompt=["short", "   "])),
        "wrong_type": ("edit_prompt", lambda r: r.update(edit_prompt=["a", "b", "c"])),
    }[kind]


SEED_KINDS = [
    "undecodable_base64",
    "not_an_image",
    "zero_size_image",
    "missing_value",
    "empty_instruction",
    "wrong_type",
]


def _read(cfg):
    dataset = build_dataset(cfg, "train")
    return [s for _, s in dataset.iter_epoch(0)], dataset


@pytest.mark.parametrize("kind", SEED_KINDS)
def test_seed_bad_row_error_names_file_row_column(tmp_path, helpers, kind):
    column, mutate = _seed_case(kind)
    rows = helpers.seed_rows(4)
    mutate(rows[BAD_INDEX])
    path = helpers.write_seed_parquet(rows, tmp_path / "part.parquet")
    with pytest.raises(BadRowError) as info:
        _read(helpers.data_config(path, shuffle=False))
    err = info.value
    assert (err.file, err.row, err.column, err.reason) == (path, BAD_INDEX, column, kind)
    assert f"{path} row {BAD_INDEX} column {column!r}: {kind}" in str(err)


@pytest.mark.parametrize("kind", SEED_KINDS)
def test_seed_bad_row_skip_counts_by_reason(tmp_path, helpers, kind):
    _, mutate = _seed_case(kind)
    rows = helpers.seed_rows(4)
    mutate(rows[BAD_INDEX])
    path = helpers.write_seed_parquet(rows, tmp_path / "part.parquet")
    samples, dataset = _read(helpers.data_config(path, shuffle=False, on_bad_row="skip"))
    assert [s.id for s in samples] == ["row-0", "row-1", "row-3"]
    assert dict(dataset.stats.bad_rows) == {kind: 1}
    assert dataset.stats.metrics()[f"data/bad_rows/{kind}"] == 1.0
    assert dataset.stats.rows_read == 3


def test_seed_missing_column_and_wrong_column_type(tmp_path, helpers):
    helpers.write_seed_parquet(helpers.seed_rows(3), tmp_path / "a.parquet")
    table = pa.Table.from_pylist(helpers.seed_rows(2, 10)).drop_columns(["qwen_edited_img_b64"])
    pq.write_table(table, tmp_path / "b.parquet")
    with pytest.raises(BadRowError) as info:
        _read(helpers.data_config(tmp_path, shuffle=False))
    assert (info.value.file, info.value.row, info.value.column, info.value.reason) == (
        str(tmp_path / "b.parquet"),
        0,
        "qwen_edited_img_b64",
        "missing_column",
    )
    samples, dataset = _read(helpers.data_config(tmp_path, shuffle=False, on_bad_row="skip"))
    assert len(samples) == 3 and dict(dataset.stats.bad_rows) == {"missing_column": 2}

    table = pa.Table.from_pylist(helpers.seed_rows(2, 20)).set_column(5, "edit_prompt", pa.array([7, 8], pa.int64()))
    pq.write_table(table, tmp_path / "c.parquet")
    samples, dataset = _read(helpers.data_config(tmp_path / "c.parquet", shuffle=False, on_bad_row="skip"))
    assert samples == [] and dict(dataset.stats.bad_rows) == {"wrong_type": 2}


def _jsonl_case(tmp_path, helpers, kind):
    path = helpers.write_jsonl(tmp_path, 4)
    lines = path.read_text().splitlines()
    record = json.loads(lines[BAD_INDEX])
    column = {
        "invalid_record": "<record>",
        "missing_file": "source_image",
        "missing_column": "edited_image",
        "wrong_type": "instruction",
        "not_an_image": "source_image",
        "empty_instruction": "instruction",
    }[kind]
    if kind == "invalid_record":
        lines[BAD_INDEX] = '{"id": "row-2", "instruction": '
    else:
        if kind == "missing_file":
            record["source_image"] = "images/nowhere.png"
        elif kind == "missing_column":
            del record["edited_image"]
        elif kind == "wrong_type":
            record["instruction"] = 5
        elif kind == "not_an_image":
            (tmp_path / "images" / "text.png").write_text("hello")
            record["source_image"] = "images/text.png"
        elif kind == "empty_instruction":
            record["instruction"] = ""
        lines[BAD_INDEX] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")
    return path, column


JSONL_KINDS = ["invalid_record", "missing_file", "missing_column", "wrong_type", "not_an_image", "empty_instruction"]


@pytest.mark.parametrize("kind", JSONL_KINDS)
def test_jsonl_bad_rows_in_both_modes(tmp_path, helpers, kind):
    path, column = _jsonl_case(tmp_path, helpers, kind)
    with pytest.raises(BadRowError) as info:
        _read(helpers.data_config(path, format="jsonl", shuffle=False))
    err = info.value
    assert (err.file, err.row, err.column, err.reason) == (str(path), BAD_INDEX + 1, column, kind)
    assert f"line {BAD_INDEX + 1}" in str(err)
    samples, dataset = _read(helpers.data_config(path, format="jsonl", shuffle=False, on_bad_row="skip"))
    assert [s.id for s in samples] == ["row-0", "row-1", "row-3"]
    assert dict(dataset.stats.bad_rows) == {kind: 1}


def test_only_the_first_few_skipped_rows_are_logged(tmp_path, helpers, caplog):
    rows = helpers.seed_rows(LOGGED_BAD_ROWS + 4)
    for row in rows:
        row["src_img_b64"] = "%%%"
    path = helpers.write_seed_parquet(rows, tmp_path / "bad.parquet")
    with caplog.at_level(logging.WARNING, logger="easyr1.data"):
        samples, dataset = _read(helpers.data_config(path, shuffle=False, on_bad_row="skip"))
    assert samples == []
    assert dataset.stats.bad_rows["undecodable_base64"] == LOGGED_BAD_ROWS + 4
    skipped = [r for r in caplog.records if "skipping bad row" in r.getMessage()]
    assert len(skipped) == LOGGED_BAD_ROWS
    assert "bad.parquet row 0 column 'src_img_b64'" in skipped[0].getMessage()
    assert any("only their counts" in r.getMessage() for r in caplog.records)
