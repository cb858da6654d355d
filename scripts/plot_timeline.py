"""Draw the pools' timeline of a few training steps from the driver's ``stage_spans.jsonl`` files.

Each run folder of ``easyr1 train`` (and of ``benchmarks/pipeline.py --out``) holds ``stage_spans.jsonl``: one line per
step with every stage span (stage, wall-clock start and end, the step the work is for). This script draws, for each
file given, one panel with a lane per pool (rollout engines, editor, judge, actor); a bar per span, coloured by the
step the work is for, so a ``streaming`` or ``off_policy_1`` run shows the pools working on the same or on two steps
at once.

    python scripts/plot_timeline.py --out docs/images/pipeline_timeline.png \\
        staged=runs/pipeline/production/staged/stage_spans.jsonl \\
        streaming=runs/pipeline/production/streaming/stage_spans.jsonl \\
        off_policy_1=runs/pipeline/production/off_policy_1/stage_spans.jsonl --steps 3 4
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from easyr1.trainer.stage_spans import POOLS, STAGE_POOLS

STEP_COLOURS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860")


def read_steps(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise SystemExit(f"{path}: no steps")
    return rows


def plot(runs: list[tuple[str, list[dict]]], steps: list[int], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig, axes = plt.subplots(len(runs), 1, figsize=(11, 1.6 + 1.5 * len(runs)), sharex=True, squeeze=False)
    widest = 0.0
    shown_steps: set[int] = set()
    for ax, (label, rows) in zip(axes[:, 0], runs, strict=True):
        window = [row for row in rows if row["step"] in steps]
        if not window:
            raise SystemExit(f"{label}: none of steps {steps} in the file")
        t0 = min(row["start"] for row in window)
        t1 = max(row["end"] for row in window)
        widest = max(widest, t1 - t0)
        for row in window:
            for span in row["spans"]:
                start, end = max(span["start"], t0), min(span["end"], t1)
                if end <= start:
                    continue
                colour = STEP_COLOURS[span["for_step"] % len(STEP_COLOURS)]
                shown_steps.add(span["for_step"])
                for pool in STAGE_POOLS.get(span["stage"], ()):
                    lane = POOLS.index(pool)
                    ax.broken_barh([(start - t0, end - start)], (lane - 0.35, 0.7), color=colour, alpha=0.55, lw=0)
            ax.axvline(row["end"] - t0, color="black", lw=0.8, ls="--")
        per_step = (t1 - t0) / len(window)
        ax.set_yticks(range(len(POOLS)), POOLS)
        ax.set_ylim(-0.6, len(POOLS) - 0.4)
        ax.invert_yaxis()
        ax.set_title(f"{label}: steps {steps[0]}–{steps[-1]}, {per_step:.2f} s per step", loc="left", fontsize=10)
    axes[-1, 0].set_xlim(0, widest)
    axes[-1, 0].set_xlabel("seconds (dashed line: a step's end)")
    handles = [
        Patch(color=STEP_COLOURS[s % len(STEP_COLOURS)], alpha=0.55, label=f"work for step {s}")
        for s in sorted(shown_steps)
    ]
    fig.legend(handles=handles, loc="upper right", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="label=path/to/stage_spans.jsonl (one panel each, in order)")
    parser.add_argument("--steps", nargs="+", type=int, default=[3, 4], help="the steps to draw")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args(argv)
    runs = []
    for item in args.runs:
        label, sep, path = item.partition("=")
        if not sep:
            label, path = Path(item).parent.name, item
        runs.append((label, read_steps(Path(path))))
    plot(runs, sorted(args.steps), args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
