"""Run summary and HTML report from metrics.jsonl."""

from __future__ import annotations

import json
import math

import pytest

from easyr1.trainer.report import read_metrics, summarize, write_report


def _rows(n):
    rows = []
    for step in range(1, n + 1):
        rows.append(
            {
                "step": step,
                "reward/mean": float(step),
                "reward/format": 4.0,
                "samples/total": 8,
                "samples/valid": 6,
                "timing/rollout_s": 0.5,
                "timing/step_s": 1.0,
            }
        )
    return rows


def test_summary_first_and_last_fifth():
    summary = summarize(_rows(10))
    assert summary.first["reward/mean"] == pytest.approx(1.5)  # steps 1, 2
    assert summary.last["reward/mean"] == pytest.approx(9.5)  # steps 9, 10
    assert summary.improvement == pytest.approx(8.0)
    assert summary.masked_fraction == pytest.approx(0.25)
    assert summary.stage_seconds == {"rollout": 0.5, "step": 1.0}
    assert math.isnan(summary.first["reward/physical_geometric"])


def test_report_files(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("\n".join(json.dumps(r) for r in _rows(5)) + "\n" + json.dumps({"step": 5, "val/reward/mean": 3}) + "\n")
    rows = read_metrics(metrics)
    assert len(rows) == 5
    page = write_report(tmp_path, summarize(rows), rows)
    text = page.read_text()
    assert "<svg" in text and "polyline" in text and "+4.00" in text
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 5
