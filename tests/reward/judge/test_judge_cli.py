"""``easyr1 judge``: rows in order, one per input row, a summary, honest exit codes, and no API key anywhere."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from judge_testkit import API_KEY, picture

from easyr1.cli import main
from easyr1.reward.judge.protocol import DIMENSIONS
from easyr1.testing.judge_server import Rule, ServerBehaviour


def write_rows(folder: Path, n: int, *, absolute: bool = False) -> Path:
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    picture(1).save(images / "source.png")
    lines = []
    for i in range(n):
        picture(100 + i).save(images / f"edit-{i}.jpg")
        edited = images / f"edit-{i}.jpg" if absolute else Path("images") / f"edit-{i}.jpg"
        lines.append(
            json.dumps(
                {
                    "id": f"row-{i}",
                    "source_image": "images/source.png",
                    "edited_image": str(edited),
                    "instruction": f"sample-{i}: turn the car red",
                }
            )
        )
    path = folder / "rows.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def all_logs() -> Iterator[io.StringIO]:
    """Every log record of every library at DEBUG (the SDK and HTTP clients included)."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setLevel(logging.DEBUG)
    names = ["", "easyr1", "openai", "httpx2", "httpcore2", "httpx", "aiohttp"]
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    logging.getLogger("").addHandler(handler)
    logging.getLogger("easyr1").addHandler(handler)  # the CLI's logger does not propagate
    yield buffer
    logging.getLogger("").removeHandler(handler)
    logging.getLogger("easyr1").removeHandler(handler)
    for lg, level in zip(loggers, levels, strict=True):
        lg.setLevel(level)


def run_judge(server, rows: Path, out: Path, *extra: str, log_level: str = "INFO") -> int:
    return main(
        [
            "--log-level",
            log_level,
            "judge",
            "--input",
            str(rows),
            "--out",
            str(out),
            "--base-url",
            server.base_url,
            "--model",
            "judge-test",
            *extra,
            "outage_budget_s=0",  # failures of the rules are final at once (test_judge_outage.py covers waiting)
        ]
    )


def test_rows_in_order_with_invalid_ones_reported(server, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    server.behaviour = ServerBehaviour(
        scores={"target_attribution": 2.5},
        rules=[
            Rule(kind="malformed", match="sample-3:"),
            Rule(kind="server_error", match="sample-5:", retry_after=None),
        ],
    )
    rows = write_rows(tmp_path, 8, absolute=True)
    out = tmp_path / "out" / "scores.jsonl"
    assert run_judge(server, rows, out, "--mode", "per_dimension", "--max-concurrency", "4", "max_retries=0") == 0
    output = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["id"] for row in output] == [f"row-{i}" for i in range(8)]
    for i, row in enumerate(output):
        assert set(row) == {"id", "scores", "valid", "reason", "cached"}
        assert list(row["scores"]) == list(DIMENSIONS)
        if i in (3, 5):
            assert row["valid"] is False and set(row["scores"].values()) == {None}
        else:
            assert row["valid"] is True and row["reason"] is None and row["scores"]["target_attribution"] == 2.5
    assert output[3]["reason"] == "unparsable" and output[5]["reason"] == "server_error"
    assert not (tmp_path / "out" / "scores.jsonl.partial").exists()
    printed = capsys.readouterr().out
    for needle in (
        "judge summary",
        "invalid: unparsable",
        "invalid: server_error",
        "mean target_attribution",
        "latency p50",
        "latency p95",
        "prompt tokens",
        "cost (USD)",
        "wrote 8 rows",
    ):
        assert needle in printed


def test_cache_override_marks_second_run_cached(server, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    rows = write_rows(tmp_path, 3)
    out = tmp_path / "scores.jsonl"
    cache = f"cache_dir={tmp_path / 'cache'}"
    assert run_judge(server, rows, out, "--mode", "single_call", cache, "judge.max_tokens=300") == 0
    sent = server.request_count
    assert run_judge(server, rows, out, "--mode", "single_call", cache, "judge.max_tokens=300") == 0
    assert server.request_count == sent == 3
    assert all(json.loads(line)["cached"] for line in out.read_text().splitlines())


def test_api_key_never_in_logs_or_files(server, tmp_path, monkeypatch, capsys, all_logs) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    server.behaviour = ServerBehaviour(
        require_api_key=API_KEY,
        rules=[
            Rule(kind="unauthorized", match="sample-0:"),
            Rule(kind="bad_request", match="sample-1:"),
            Rule(kind="server_error", match="sample-2:", retry_after=0.01),
        ],
    )
    rows = write_rows(tmp_path, 4)
    out = tmp_path / "scores.jsonl"
    assert run_judge(server, rows, out, "--mode", "single_call", "max_retries=1", log_level="DEBUG") == 0
    captured = capsys.readouterr()
    logs = all_logs.getvalue()
    assert "HTTP Request: POST" in logs  # the capture really saw the HTTP libraries' debug logs
    assert json.loads(out.read_text().splitlines()[3])["valid"]  # the key did reach the server
    for text in (captured.out, captured.err, logs, out.read_text()):
        assert API_KEY not in text
        assert API_KEY[-12:] not in text


def test_bad_json_line_is_named(server, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    rows = write_rows(tmp_path, 3)
    lines = rows.read_text().splitlines()
    lines[1] = lines[1][:-1]  # cut the closing brace
    rows.write_text("\n".join(lines) + "\n")
    out = tmp_path / "scores.jsonl"
    assert run_judge(server, rows, out) != 0
    assert f"{rows}:2: not valid JSON" in capsys.readouterr().err
    assert not out.exists() and server.request_count == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda row: row.pop("instruction"), "missing field 'instruction'"),
        (lambda row: row.update(edited_image="images/nope.png"), "field 'edited_image': image file"),
        (lambda row: row.update(id=["x"]), "field 'id' must be"),
        (lambda row: row.update(edited_image="images/broken.png"), "field 'edited_image': cannot read image"),
    ],
)
def test_bad_row_is_named(server, tmp_path, monkeypatch, capsys, change, message: str) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    rows = write_rows(tmp_path, 3)
    (tmp_path / "images" / "broken.png").write_text("not an image")
    lines = [json.loads(line) for line in rows.read_text().splitlines()]
    change(lines[2])
    rows.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    out = tmp_path / "scores.jsonl"
    assert run_judge(server, rows, out) != 0
    err = capsys.readouterr().err
    assert f"{rows}:3:" in err and message in err
    assert not out.exists()


def test_missing_key_is_a_clear_error(server, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    rows = write_rows(tmp_path, 1)
    assert run_judge(server, rows, tmp_path / "scores.jsonl") != 0
    assert "OPENAI_API_KEY" in capsys.readouterr().err
