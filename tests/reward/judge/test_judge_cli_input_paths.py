"""``easyr1 judge``: image fields that are not file paths end in a message and exit 2, never a traceback."""

from __future__ import annotations

import base64
import io
import json

import pytest
from judge_testkit import picture

from easyr1.cli import main


def data_uri() -> str:
    buffer = io.BytesIO()
    picture(3).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (data_uri(), "is a data: URI; give the path of an image file"),
        ("x" * 5000, "not a usable image path"),
    ],
    ids=["data-uri", "name-too-long"],
)
def test_non_path_image_field_is_a_usage_error(tmp_path, capsys, value, message):
    picture(1).save(tmp_path / "source.png")
    row = {"id": "r0", "source_image": "source.png", "edited_image": value, "instruction": "turn the car red"}
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps(row) + "\n")
    code = main(["judge", "--input", str(rows), "--out", str(tmp_path / "out.jsonl"), "judge.backend=sandbox"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{rows}:1: field 'edited_image'" in err and message in err
    assert "Traceback" not in err
    assert not (tmp_path / "out.jsonl").exists()
