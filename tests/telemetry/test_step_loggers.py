"""Console line, metrics.jsonl, TensorBoard and the PNG/HTML sample report."""

from __future__ import annotations

import json
import logging
import random

import pytest
from PIL import Image
from telemetry_testkit import make_config, run_synthetic_driver, sample_rows, synthetic_step

from easyr1.telemetry import SampleRow, Telemetry, format_step_line


def test_console_line_is_one_concise_line(caplog: pytest.LogCaptureFixture, tmp_path) -> None:
    metrics = synthetic_step(3, random.Random(0))
    line = format_step_line(3, metrics)
    assert "\n" not in line and len(line) < 400
    assert line.startswith("step 3 | reward ")
    assert f"valid {metrics['samples/valid']}/16" in line
    assert "judge_timeout" in line and "failed" in line and "$" in line
    assert "rollout" in line and "kl" in line
    assert format_step_line(7, {}) == "step 7"
    cfg = make_config("telemetry.prometheus.enabled=false", "telemetry.console_every=2")
    with caplog.at_level(logging.INFO, logger="easyr1.train"), Telemetry(cfg, tmp_path) as telemetry:
        for step in (1, 2, 3, 4):
            telemetry.log_step(step, {"reward/mean": 1.5})
    lines = [r.getMessage() for r in caplog.records if r.name == "easyr1.train"]
    assert lines == ["step 2 | reward 1.50", "step 4 | reward 1.50"]


def test_metrics_jsonl_has_every_step_and_key(tmp_path) -> None:
    cfg = make_config("telemetry.prometheus.enabled=false", "trainer.logger=[file]")
    with Telemetry(cfg, tmp_path) as telemetry:
        logged = run_synthetic_driver(telemetry, steps=3)
        telemetry.log_step(4, {"reward/mean": float("nan"), "actor/kl": float("inf"), "note": "resumed"})
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for record, metrics in zip(records, logged, strict=False):
        assert record["time"] > 0
        assert set(metrics) <= set(record)  # unknown keys (val/reward_mean) included
        assert record["reward/mean"] == pytest.approx(metrics["reward/mean"])
    assert records[3]["reward/mean"] is None and records[3]["actor/kl"] is None and records[3]["note"] == "resumed"
    # a second Telemetry on the same folder (a resumed run) appends
    with Telemetry(cfg, tmp_path) as telemetry:
        telemetry.log_step(5, {"reward/mean": 2.0})
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 5


def test_tensorboard_scalars_images_and_text(tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = make_config(
        "telemetry.prometheus.enabled=false", "trainer.logger=[tensorboard]", "telemetry.log_images_every=2"
    )
    with Telemetry(cfg, tmp_path) as telemetry:
        run_synthetic_driver(telemetry, steps=2)
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    assert "reward/mean" in tags["scalars"] and "timing/judge_s" in tags["scalars"]
    assert [e.step for e in events.Scalars("reward/mean")] == [1, 2]
    assert {"samples/0", "samples/1", "samples/2"} <= set(tags["images"])
    assert [e.step for e in events.Images("samples/0")] == [2]  # log_images_every=2
    assert any(t.startswith("samples/table") for t in tags["tensors"])


def test_sample_report_png_grid_and_html(tmp_path) -> None:
    cfg = make_config("telemetry.prometheus.enabled=false", "trainer.logger=[]", "telemetry.images_per_table=2")
    rows = sample_rows(10, random.Random(0), count=3)
    rows[1].final = None
    rows[1].status = "edit_failed"
    rows[0].cot = "<script>alert(1)</script>"
    with Telemetry(cfg, tmp_path) as telemetry:
        assert telemetry.should_log_samples(10)
        page = telemetry.log_samples(10, rows)
    assert page == tmp_path / "samples" / "step_000010" / "index.html"
    html = page.read_text()
    assert html.count("<tr>") == 1 + 2  # header + images_per_table rows
    assert "no final image<br>(edit_failed)" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "row00_final.png" in html and "row01_final.png" not in html
    grid = Image.open(page.parent / "grid.png")
    assert grid.width == 3 * 256 and grid.height > 2 * 256
    assert "step_000010/index.html" in (tmp_path / "samples" / "index.html").read_text()


def test_sample_rows_from_mappings_and_schedule(tmp_path) -> None:
    image = Image.new("RGB", (8, 8), "red")
    row = SampleRow.coerce(
        {"source_image": image, "preliminary_image": image, "final_image": None, "reward": 1.0, "seed": 7}
    )
    assert row.final is None and row.extra == {"seed": 7}
    with pytest.raises(ValueError, match="missing preliminary"):
        SampleRow.coerce({"source": image, "id": "x"})
    cfg = make_config("telemetry.prometheus.enabled=false", "trainer.logger=[]", "telemetry.log_images_every=5")
    with Telemetry(cfg, tmp_path) as telemetry:
        assert [s for s in range(1, 11) if telemetry.should_log_samples(s)] == [5, 10]
        assert telemetry.log_samples(3, [row]) is None
        assert telemetry.log_samples(5, []) is None
        assert telemetry.log_samples(5, [row]) is not None
    off = make_config("telemetry.prometheus.enabled=false", "trainer.logger=[]", "telemetry.images_per_table=0")
    with Telemetry(off, tmp_path / "off") as telemetry:
        assert not telemetry.should_log_samples(5)


def test_validation_tables_and_validation_only_steps(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    """The driver's shapes: mapping rows with ``response``/``format`` keys, ``prefix="val"``, val-only dicts."""
    cfg = make_config("trainer.logger=[console,file]", "telemetry.log_images_every=100", "telemetry.images_per_table=1")
    image = Image.new("RGB", (16, 16), "blue")
    rows = [
        {
            "id": f"v{i}",
            "source": image,
            "preliminary": image,
            "final": image if i else None,
            "response": "<CoT>the sky is clear</CoT>\n<Re_edit>dry the ground</Re_edit>",
            "re_edit": "dry the ground",
            "scores": {},
            "format": 5.0,
            "reward": 7.0,
            "status": "ok" if i else "edit_failed",
        }
        for i in range(3)
    ]
    with caplog.at_level(logging.INFO, logger="easyr1.train"), Telemetry(cfg, tmp_path) as telemetry:
        telemetry.log_step(3, {"reward/mean": 5.0, "samples/total": 16, "samples/valid": 14})
        page = telemetry.log_samples(3, rows, prefix="val")  # not a training-table step, logged anyway
        telemetry.log_step(3, {"val/reward/mean": 6.5, "val/samples/total": 8, "val/samples/valid": 7})
        assert telemetry.exporter is not None
        registry = telemetry.exporter.registry
        assert registry.get_sample_value("easyr1_steps_total") == 1  # the validation dict is not a step
        assert registry.get_sample_value("easyr1_samples_total") == 16
    assert page == tmp_path / "samples" / "val" / "step_000003" / "index.html"
    html = page.read_text()
    assert html.count("<tr>") == 1 + 3  # every given row; images_per_table is for training tables
    assert "&lt;CoT&gt;the sky is clear" in html and "format: 5.00" in html
    assert any("val reward 6.50 (7/8 valid)" in r.getMessage() for r in caplog.records)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [3, 3] and records[1]["val/reward/mean"] == 6.5
