"""The end-of-run summary: reward by dimension early vs late, time per stage, and an HTML report a person can read.

``report.html`` shows the training reward (the five judge dimensions and the combined reward on a 0–10 axis, the
format score on its own 0–5 axis), the validation curve (held-out judge mean per validation step, per dimension,
format apart), the early/late table, stage times, the edit grids the run logged (``samples/step_*/grid.png``,
``samples/val/step_*/grid.png``) and, when the caller passes them, held-out rows that GRPO repaired and the SFT
start did not. Plots are drawn with matplotlib into ``report_files/``; without matplotlib the page says so.
"""

from __future__ import annotations

import html
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easyr1.config import DIMENSIONS

logger = logging.getLogger(__name__)

REWARD_KEYS = ("reward/mean", *(f"reward/{d}" for d in DIMENSIONS), "reward/format")


def read_val_metrics(path: Path) -> list[dict[str, Any]]:
    """Validation rows of ``metrics.jsonl`` (one per validation step; a resumed run keeps the newest)."""
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    by_step = {r["step"]: r for r in rows if "val/reward/mean" in r}
    return [by_step[s] for s in sorted(by_step)]


def judge_mean(row: dict[str, Any], prefix: str = "val/") -> float:
    """Mean of the five judge dimensions in a metrics row (NaN when any is missing or not finite)."""
    values = [row.get(f"{prefix}reward/{d}") for d in DIMENSIONS]
    if any(v is None or not math.isfinite(v) for v in values):
        return math.nan
    return sum(values) / len(values)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Rows of ``metrics.jsonl`` (training steps only; validation rows carry ``val/`` keys)."""
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    by_step = {r["step"]: r for r in rows if "reward/mean" in r}  # a resumed run re-logs the steps it replays
    return [by_step[s] for s in sorted(by_step)]


@dataclass
class RunSummary:
    steps: int
    first: dict[str, float] = field(default_factory=dict)
    """Mean of each reward key over the first 20 % of steps."""
    last: dict[str, float] = field(default_factory=dict)
    """... and over the last 20 %."""
    stage_seconds: dict[str, float] = field(default_factory=dict)
    """Mean seconds per step by stage."""
    masked_fraction: float = 0.0

    @property
    def improvement(self) -> float:
        return self.last.get("reward/mean", math.nan) - self.first.get("reward/mean", math.nan)

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "first": self.first,
            "last": self.last,
            "improvement": self.improvement,
            "stage_seconds": self.stage_seconds,
            "masked_fraction": self.masked_fraction,
        }


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def summarize(rows: Sequence[dict[str, Any]], fraction: float = 0.2) -> RunSummary:
    if not rows:
        return RunSummary(steps=0)
    k = max(1, round(len(rows) * fraction))
    head, tail = rows[:k], rows[-k:]
    summary = RunSummary(steps=len(rows))
    for key in REWARD_KEYS:
        summary.first[key] = _mean([r.get(key, math.nan) for r in head])
        summary.last[key] = _mean([r.get(key, math.nan) for r in tail])
    stages = sorted({key for r in rows for key in r if key.startswith("timing/")})
    summary.stage_seconds = {
        s.removeprefix("timing/").removesuffix("_s"): _mean([r.get(s, math.nan) for r in rows]) for s in stages
    }
    total = sum(r.get("samples/total", 0) for r in rows)
    valid = sum(r.get("samples/valid", 0) for r in rows)
    summary.masked_fraction = (total - valid) / total if total else 0.0
    return summary


@dataclass
class RepairedRow:
    """A held-out row that GRPO repaired and the SFT start did not (for the report)."""

    id: str
    instruction: str
    defects: list[str]
    sft_answer: str
    grpo_answer: str
    sft_judge: float
    grpo_judge: float
    images: dict[str, Path] = field(default_factory=dict)
    """``preliminary``, ``sft``, ``grpo``: PNG files (inside the run folder) to show."""


def _plot_series(ax: Any, rows: Sequence[dict[str, Any]], keys: Sequence[str], labels: Sequence[str]) -> None:
    for key, label in zip(keys, labels, strict=True):
        pts = [(r["step"], r.get(key)) for r in rows if r.get(key) is not None and math.isfinite(r.get(key))]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, label=label, lw=2.2 if "mean" in label else 1.2, marker="o" if len(xs) < 20 else None)


def write_plots(folder: Path, rows: Sequence[dict[str, Any]], val_rows: Sequence[dict[str, Any]]) -> list[Path]:
    """Training and validation plots as PNGs in ``folder``; raises ``ImportError`` without matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for name, data, prefix, title in (
        ("train_reward.png", rows, "", "Training reward per GRPO step (sampled answers)"),
        ("val_reward.png", val_rows, "val/", "Held-out validation per validation step (greedy answers)"),
    ):
        if not data:
            continue
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), dpi=100, sharex=True, height_ratios=[2, 1])
        series = [{**r, f"{prefix}judge_mean": judge_mean(r, prefix)} for r in data]
        keys = [f"{prefix}judge_mean", *(f"{prefix}reward/{d}" for d in DIMENSIONS)]
        labels = ["judge mean (5 dims)", *DIMENSIONS]
        if not prefix:
            keys.insert(0, "reward/mean")
            labels.insert(0, "combined reward mean")
        _plot_series(top, series, keys, labels)
        top.set_ylim(0, 10.3)
        top.set_ylabel("score (0–10)")
        top.set_title(title)
        top.grid(alpha=0.3)
        if top.get_lines():
            top.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
        _plot_series(bottom, series, [f"{prefix}reward/format"], ["format"])
        if not bottom.get_lines():
            bottom.text(0.5, 0.5, "no format score logged", ha="center", transform=bottom.transAxes)
        bottom.set_ylim(0, 5.2)
        bottom.set_ylabel("format (0–5)")
        bottom.set_xlabel("GRPO step")
        bottom.grid(alpha=0.3)
        if bottom.get_lines():
            bottom.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
        fig.tight_layout()
        path = folder / name
        fig.savefig(path, bbox_inches="tight")
        plt.close(fig)
        made.append(path)
    return made


def _rel(path: Path, run_dir: Path) -> str:
    return html.escape(str(path.relative_to(run_dir)) if path.is_relative_to(run_dir) else str(path))


def _repaired_html(rows: Sequence[RepairedRow], run_dir: Path) -> str:
    if not rows:
        return "<p>no held-out row was repaired by GRPO and not by the SFT start</p>"
    parts = ["<table class=rows><tr><th>row</th><th>preliminary</th><th>SFT</th><th>GRPO</th><th>answers</th></tr>"]
    for r in rows:
        cells = "".join(
            f'<td><img src="{_rel(r.images[k], run_dir)}" alt="{k}" width=128></td>' if k in r.images else "<td>–</td>"
            for k in ("preliminary", "sft", "grpo")
        )
        parts.append(
            f"<tr><td>{html.escape(r.id)}<br><small>{html.escape(', '.join(r.defects))}</small></td>{cells}"
            f"<td><b>instruction</b> {html.escape(r.instruction)}<br><b>SFT</b> ({r.sft_judge:.2f})"
            f"<pre>{html.escape(r.sft_answer)}</pre><b>GRPO</b> ({r.grpo_judge:.2f})"
            f"<pre>{html.escape(r.grpo_answer)}</pre></td></tr>"
        )
    parts.append("</table>")
    return "".join(parts)


def find_grids(run_dir: Path, last: int = 2) -> list[Path]:
    """The newest training and validation edit grids the run logged (``samples/[val/]step_*/grid.png``)."""
    train = sorted(run_dir.glob("samples/step_*/grid.png"))
    val = sorted(run_dir.glob("samples/val/step_*/grid.png"))
    return [*val[:1], *val[1:][-last:], *train[-last:]]


def write_report(
    run_dir: Path,
    summary: RunSummary,
    rows: Sequence[dict[str, Any]],
    sample_images: Sequence[Path] | None = None,
    *,
    val_rows: Sequence[dict[str, Any]] | None = None,
    outcome: dict[str, Any] | None = None,
    repaired: Sequence[RepairedRow] = (),
) -> Path:
    """Write ``run_dir/report.html`` (see the module doc). ``sample_images`` defaults to :func:`find_grids`;
    ``outcome`` holds the held-out numbers before/after GRPO (``judge_before``, ``judge_after``,
    ``repair_before``, ``repair_after``) when the caller measured them."""
    if sample_images is None:
        sample_images = find_grids(run_dir)
    if val_rows is None:
        val_rows = read_val_metrics(run_dir / "metrics.jsonl")
    table = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{summary.first.get(k, math.nan):.2f}</td>"
        f"<td>{summary.last.get(k, math.nan):.2f}</td></tr>"
        for k in REWARD_KEYS
    )
    stages = "".join(f"<tr><td>{html.escape(s)}</td><td>{t:.2f}</td></tr>" for s, t in summary.stage_seconds.items())
    try:
        plots = write_plots(run_dir / "report_files", rows, val_rows)
        plot_html = "".join(f'<p><img src="{_rel(p, run_dir)}" alt="{html.escape(p.stem)}"></p>' for p in plots)
    except ImportError:
        logger.warning("report.html without plots: matplotlib is not installed (pip install matplotlib)")
        plot_html = "<p><b>No plots: matplotlib is not installed (pip install matplotlib).</b></p>"
    val_table = "".join(
        f"<tr><td>{r['step']}</td><td>{judge_mean(r):.2f}</td><td>{r.get('val/reward/format', math.nan):.2f}</td>"
        f"<td>{r.get('val/reward/mean', math.nan):.2f}</td></tr>"
        for r in val_rows
    )
    headline = ""
    if outcome:
        headline = (
            f"<p class=headline>Held-out validation (greedy): judge mean <b>{outcome['judge_before']:.2f}</b> before GRPO "
            f"→ <b>{outcome['judge_after']:.2f}</b> after ({outcome['judge_after'] - outcome['judge_before']:+.2f}); "
            f"repair rate {outcome['repair_before']:.0%} → {outcome['repair_after']:.0%}.</p>"
        )
    images = "".join(
        f'<figure><img src="{_rel(p, run_dir)}" style="max-width:100%"><figcaption>{_rel(p, run_dir)}</figcaption>'
        "</figure>"
        for p in sample_images
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>easyr1 run report</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}td,th{{padding:2px 10px;text-align:right}}
td:first-child{{text-align:left}}table.rows td{{text-align:left;vertical-align:top}}pre{{white-space:pre-wrap}}
.headline{{font-size:1.15em}}</style></head><body>
<h1>easyr1 run report</h1>{headline}
<p>{summary.steps} GRPO steps; masked fraction {summary.masked_fraction:.1%};
reward/mean improvement (last 20 % − first 20 %): <b>{summary.improvement:+.2f}</b> (0–10 scale).</p>
<h2>Curves</h2>{plot_html}
<h2>Validation (held-out rows)</h2><table><tr><th>step</th><th>judge mean</th><th>format</th><th>reward</th></tr>
{val_table}</table>
<h2>Held-out rows GRPO repaired and the SFT start did not</h2>{_repaired_html(repaired, run_dir)}
<h2>First vs last 20 % of steps</h2><table><tr><th>metric</th><th>first</th><th>last</th></tr>{table}</table>
<h2>Seconds per step by stage</h2><table><tr><th>stage</th><th>s</th></tr>{stages}</table>
<h2>Sample edits</h2>{images or "<p>none logged</p>"}
</body></html>"""
    out = run_dir / "report.html"
    out.write_text(page)
    (run_dir / "summary.json").write_text(json.dumps(summary.to_dict(), indent=1))
    return out
