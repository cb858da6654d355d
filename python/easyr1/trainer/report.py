"""The end-of-run summary: reward by dimension early vs late, time per stage, and an HTML report with curves."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easyr1.config import DIMENSIONS

REWARD_KEYS = ("reward/mean", *(f"reward/{d}" for d in DIMENSIONS), "reward/format")


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
    summary.stage_seconds = {s.removeprefix("timing/").removesuffix("_s"): _mean([r.get(s, math.nan) for r in rows]) for s in stages}
    total = sum(r.get("samples/total", 0) for r in rows)
    valid = sum(r.get("samples/valid", 0) for r in rows)
    summary.masked_fraction = (total - valid) / total if total else 0.0
    return summary


def _svg_curve(rows: Sequence[dict[str, Any]], keys: Sequence[str], width: int = 640, height: int = 260) -> str:
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]
    steps = [r["step"] for r in rows]
    if not steps:
        return "<p>no steps</p>"
    x0, x1 = min(steps), max(steps) if max(steps) > min(steps) else min(steps) + 1
    pad = 36
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" style="background:#fff">']
    parts.append(f'<rect x="{pad}" y="8" width="{width - pad - 8}" height="{height - pad - 8}" fill="none" stroke="#ccc"/>')
    for tick in range(0, 11, 2):
        y = 8 + (height - pad - 8) * (1 - tick / 10)
        parts.append(f'<text x="4" y="{y + 4:.1f}" font-size="10">{tick}</text>')
    for i, key in enumerate(keys):
        points = []
        for r in rows:
            v = r.get(key)
            if v is None or not math.isfinite(v):
                continue
            x = pad + (width - pad - 8) * (r["step"] - x0) / (x1 - x0)
            y = 8 + (height - pad - 8) * (1 - max(0.0, min(10.0, v)) / 10)
            points.append(f"{x:.1f},{y:.1f}")
        color = palette[i % len(palette)]
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="{2.5 if key == "reward/mean" else 1.2}" points="{" ".join(points)}"/>')
        parts.append(f'<text x="{pad + 6 + 120 * (i % 4)}" y="{height - 6 - 12 * (i // 4)}" font-size="10" fill="{color}">{html.escape(key)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def write_report(run_dir: Path, summary: RunSummary, rows: Sequence[dict[str, Any]], sample_images: Sequence[Path] = ()) -> Path:
    """Write ``run_dir/report.html``: the reward curves, the early/late table, stage times and sample grids."""
    table = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{summary.first.get(k, math.nan):.2f}</td><td>{summary.last.get(k, math.nan):.2f}</td></tr>"
        for k in REWARD_KEYS
    )
    stages = "".join(f"<tr><td>{html.escape(s)}</td><td>{t:.2f}</td></tr>" for s, t in summary.stage_seconds.items())
    images = "".join(
        f'<figure><img src="{html.escape(str(p.relative_to(run_dir)) if p.is_relative_to(run_dir) else str(p))}" '
        f'style="max-width:100%"><figcaption>{html.escape(p.name)}</figcaption></figure>'
        for p in sample_images
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>easyr1 run report</title>
<style>body{{font-family:sans-serif;max-width:980px;margin:2em auto}}td,th{{padding:2px 10px;text-align:right}}
td:first-child{{text-align:left}}</style></head><body>
<h1>easyr1 run report</h1>
<p>{summary.steps} GRPO steps; masked fraction {summary.masked_fraction:.1%};
reward/mean improvement (last 20 % − first 20 %): <b>{summary.improvement:+.2f}</b> (0–10 scale).</p>
<h2>Reward per step</h2>{_svg_curve(rows, REWARD_KEYS)}
<h2>First vs last 20 % of steps</h2><table><tr><th>metric</th><th>first</th><th>last</th></tr>{table}</table>
<h2>Seconds per step by stage</h2><table><tr><th>stage</th><th>s</th></tr>{stages}</table>
<h2>Sample edits</h2>{images or "<p>none logged</p>"}
</body></html>"""
    out = run_dir / "report.html"
    out.write_text(page)
    (run_dir / "summary.json").write_text(json.dumps(summary.to_dict(), indent=1))
    return out
