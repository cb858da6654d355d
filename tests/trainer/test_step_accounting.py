"""One accounting rule for every logged row, the row logged before a stop included: valid + masked = total, every
masked sample under a reason, ``data/digest`` present; reward means of a step without valid samples are absent
(``null`` in metrics.jsonl, with a count of 0), never 0.0."""

from __future__ import annotations

import json
import math

import pytest
from test_grpo_step import FailingEditor, FailingJudge, N, data_dir, make  # noqa: F401 (data_dir is a fixture)

from easyr1.trainer.grpo import StageFailure
from easyr1.trainer.step_metrics import AccountingError, check_accounting


def _rows(path):
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


def _as_logged(row: dict) -> dict:
    """metrics.jsonl writes NaN as null; read it back as NaN for the rule."""
    return {k: (math.nan if v is None else v) for k, v in row.items()}


def _assert_rule(row: dict) -> None:
    masked = {k: v for k, v in row.items() if k.startswith("samples/masked/")}
    assert row["samples/valid"] + sum(masked.values()) == row["samples/total"]
    assert isinstance(row["data/digest"], str) and row["data/digest"]
    check_accounting(_as_logged(row))


@pytest.mark.parametrize("failing", ["judge", "editor"])
def test_stop_row_follows_the_accounting_rule(data_dir, tmp_path, failing):  # noqa: F811
    trainer, comps = make(
        data_dir, tmp_path, "trainer.abort_on_all_failed=true", judge=FailingJudge() if failing == "judge" else None
    )
    if failing == "editor":
        comps.editor = trainer.scorer.editor = FailingEditor()
    with pytest.raises(StageFailure, match="every edit/judge attempt failed"):
        trainer.train_step()
    comps.telemetry.close()
    (row,) = _rows(tmp_path)
    # 2 rows x 4 answers: one answer per row has no <Re_edit> (zero reward), the other three failed
    assert row["samples/total"] == 2 * N
    _assert_rule(row)
    reason = "judge:timeout" if failing == "judge" else "edit:no_replicas"
    assert row[f"samples/masked/{reason}"] == 6
    assert row["samples/masked/group:too_few_valid"] == 2  # the zero-reward answers are counted, not left out
    assert row["reward/mean"] is None and row["reward/count"] == 0
    assert comps.actor.batches == [] and comps.actor.saved == [] and trainer.step == 0


def test_stop_row_carries_the_judge_counters(data_dir, tmp_path):  # noqa: F811
    trainer, comps = make(data_dir, tmp_path, judge=FailingJudge())
    with pytest.raises(StageFailure):
        trainer.train_step()
    comps.telemetry.close()
    (row,) = _rows(tmp_path)
    assert row["judge/requests/timeout"] == 6 and "timing/step_s" in row


def test_step_without_valid_samples_logs_absent_reward_means(data_dir, tmp_path):  # noqa: F811
    trainer, comps = make(data_dir, tmp_path, "trainer.abort_on_all_failed=false", judge=FailingJudge())
    metrics = trainer.train_step()  # goes on: nothing to train on, nothing fabricated
    comps.telemetry.close()
    assert math.isnan(metrics["reward/mean"]) and metrics["reward/count"] == 0
    (row,) = _rows(tmp_path)
    assert row["samples/valid"] == 0
    assert row["reward/mean"] is None and row["reward/count"] == 0  # not 0.0 from the zero-reward answers
    assert all(row[f"reward/{d}"] is None for d in ("physical_geometric", "target_attribution"))
    assert row["reward/judged_count"] == 0
    _assert_rule(row)
    assert comps.actor.batches == []


def test_normal_row_reward_mean_covers_the_valid_samples(data_dir, tmp_path):  # noqa: F811
    trainer, comps = make(data_dir, tmp_path)
    metrics = trainer.train_step()
    comps.telemetry.close()
    (row,) = _rows(tmp_path)
    _assert_rule(row)
    assert row["reward/count"] == row["samples/valid"] > 0
    assert len(comps.actor.batches) == 1
    assert row["reward/mean"] == pytest.approx(metrics["reward/mean"])


@pytest.mark.parametrize(
    "broken",
    [
        {
            "samples/total": 8,
            "samples/valid": 0,
            "samples/masked/judge:timeout": 6,
            "reward/mean": math.nan,
            "reward/count": 0,
            "data/digest": "x",
        },
        {"samples/total": 8, "samples/valid": 8, "reward/mean": 1.0, "reward/count": 8},  # no digest
        {
            "samples/total": 8,
            "samples/valid": 0,
            "samples/masked/a": 8,
            "reward/mean": 0.0,
            "reward/count": 0,
            "data/digest": "x",
        },
        {
            "samples/total": 8,
            "samples/valid": 2,
            "samples/masked/a": 6,
            "reward/mean": 1.0,
            "reward/count": 3,
            "data/digest": "x",
        },
        {
            "samples/total": 8,
            "samples/valid": 10,
            "samples/masked/a": -2,
            "reward/mean": 1.0,
            "reward/count": 10,
            "data/digest": "x",
        },
    ],
)
def test_check_accounting_rejects_broken_rows(broken):
    with pytest.raises(AccountingError):
        check_accounting(broken)
