"""``easyr1 check-data`` prints user text (paths, messages) verbatim: rich markup in it is escaped."""

from __future__ import annotations

from easyr1.cli import main


def run(capsys, *argv):
    code = main(["check-data", *map(str, argv)])
    out = capsys.readouterr().out
    return code, " ".join(out.split())  # rich wraps long lines; compare on collapsed whitespace


def test_three_item_edit_prompt_message_prints_intact(tmp_path, helpers, capsys):
    rows = helpers.seed_rows(2)
    rows[1]["edit_prompt"] = ["short", "detailed", "third"]
    path = helpers.write_seed_parquet(rows, tmp_path / "a.parquet")
    code, out = run(capsys, tmp_path)
    assert code == 1
    assert f"first bad row: {path} row 1 column 'edit_prompt'" in out
    assert "list of 3 items, expected [short, detailed]" in out


def test_markup_like_folder_name_prints_intact(tmp_path, helpers, capsys):
    folder = tmp_path / "[bold]data"
    folder.mkdir()
    helpers.write_seed_parquet(helpers.seed_rows(2), folder / "a.parquet")
    code, out = run(capsys, folder)
    assert code == 0
    assert "[bold]data" in out
