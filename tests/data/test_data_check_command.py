"""``easyr1 check-data``: rows, bad rows by reason, image sizes; exit 1 naming the first bad row."""

from __future__ import annotations

from easyr1.cli import main


def run(capsys, *argv):
    code = main(["check-data", *map(str, argv)])
    out = capsys.readouterr().out
    return code, " ".join(out.split())  # rich wraps long lines; compare on collapsed whitespace


def test_clean_dataset(tmp_path, helpers, capsys):
    helpers.write_seed_parquet(helpers.seed_rows(3, size=(40, 30)), tmp_path / "a.parquet")
    helpers.write_seed_parquet(helpers.seed_rows(2, 3, size=(60, 20)), tmp_path / "b.parquet")
    code, out = run(capsys, tmp_path)
    assert code == 0
    assert "5 rows stored, 5 read" in out
    assert "bad rows: none" in out
    assert "40x20" in out and "60x30" in out  # min and max of the stored sizes


def test_bad_rows_fail_by_default_and_pass_when_skipping(tmp_path, helpers, capsys):
    rows = helpers.seed_rows(5)
    rows[1]["src_img_b64"] = "***"
    rows[3]["edit_prompt"] = ["", ""]
    rows[4]["src_img_b64"] = "***"
    path = helpers.write_seed_parquet(rows, tmp_path / "a.parquet")
    code, out = run(capsys, tmp_path)
    assert code == 1
    assert "5 rows stored, 2 read" in out
    assert "undecodable_base64 │ 2" in out and "empty_instruction │ 1" in out
    assert f"first bad row: {path} row 1 column 'src_img_b64': undecodable_base64" in out
    code, out = run(capsys, tmp_path, "--on-bad-row", "skip")
    assert code == 0
    assert "3 bad rows would be skipped" in out


def test_jsonl_folder_and_missing_path(tmp_path, helpers, capsys):
    helpers.write_jsonl(tmp_path, 3)
    code, out = run(capsys, tmp_path, "--format", "jsonl")
    assert code == 0 and "3 rows stored, 3 read" in out
    code, out = run(capsys, tmp_path / "absent")
    assert code == 1 and "no such file or folder" in out
