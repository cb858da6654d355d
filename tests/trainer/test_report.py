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
    metrics.write_text(
        "\n".join(json.dumps(r) for r in _rows(5)) + "\n" + json.dumps({"step": 5, "val/reward/mean": 3}) + "\n"
    )
    rows = read_metrics(metrics)
    assert len(rows) == 5
    page = write_report(tmp_path, summarize(rows), rows)
    text = page.read_text()
    assert "+4.00" in text
    assert 'src="report_files/train_reward.png"' in text and (tmp_path / "report_files" / "train_reward.png").is_file()
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 5


def _val_row(step, value):
    return {
        "step": step,
        "val/reward/mean": value,
        "val/reward/format": 4.0,
        **{f"val/reward/{d}": value for d in DIMS},
    }


DIMS = ("physical_geometric", "environment_context", "cultural_social", "logical_causal", "target_attribution")


def test_report_embeds_grids_validation_curve_and_outcome(tmp_path):
    from PIL import Image

    from easyr1.trainer.report import RepairedRow, read_val_metrics

    rows = _rows(4)
    lines = [json.dumps(_val_row(0, 5.5)), *map(json.dumps, rows), json.dumps(_val_row(4, 7.25))]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    for folder in ("samples/step_000004", "samples/val/step_000004"):
        (tmp_path / folder).mkdir(parents=True)
        Image.new("RGB", (16, 16), "red").save(tmp_path / folder / "grid.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    repaired = [
        RepairedRow(
            "row-1",
            "Make it rain.",
            ["dry_ground_in_rain"],
            "sft <x>",
            "grpo",
            5.0,
            9.0,
            {"preliminary": tmp_path / "a.png", "sft": tmp_path / "a.png", "grpo": tmp_path / "a.png"},
        )
    ]
    outcome = {"judge_before": 5.5, "judge_after": 7.25, "repair_before": 0.1, "repair_after": 0.4}
    metrics = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in read_val_metrics(tmp_path / "metrics.jsonl")] == [0, 4]
    text = write_report(tmp_path, summarize(metrics), metrics, outcome=outcome, repaired=repaired).read_text()
    assert "none logged" not in text
    assert 'src="samples/step_000004/grid.png"' in text and 'src="samples/val/step_000004/grid.png"' in text
    assert 'src="report_files/val_reward.png"' in text and (tmp_path / "report_files" / "val_reward.png").is_file()
    assert "5.50</b> before GRPO" in text and "7.25</b> after (+1.75)" in text and "10% → 40%" in text
    assert "row-1" in text and "sft &lt;x&gt;" in text and 'src="a.png"' in text


def test_report_format_has_its_own_axis(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from easyr1.trainer import report

    made = []
    real = plt.subplots

    def spy(*args, **kwargs):
        fig, axes = real(*args, **kwargs)
        made.append(axes)
        return fig, axes

    plt.subplots = spy
    try:
        report.write_plots(tmp_path, _rows(3), [_val_row(0, 5.0), _val_row(3, 6.0)])
    finally:
        plt.subplots = real
    assert len(made) == 2
    for top, bottom in made:
        assert "format" not in {line.get_label() for line in top.get_lines()}
        assert [line.get_label() for line in bottom.get_lines()] == ["format"]
        assert top.get_ylim()[1] > 10 and bottom.get_ylim()[1] < 6
        anchor = top.get_legend().get_bbox_to_anchor().transformed(top.transAxes.inverted())
        assert anchor.x0 > 1  # the legend sits right of the axes, never over the curves
