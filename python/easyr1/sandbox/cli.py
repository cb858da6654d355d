"""``easyr1 make-sandbox-data``: write sandbox scenes in the seed parquet format."""

from __future__ import annotations

import argparse
import collections
import json

from .answers import summarize_rewards
from .generator import iter_rows, write_sandbox_dataset


def make_sandbox_data_command(args: argparse.Namespace) -> int:
    """Write ``--rows`` rows to ``--out`` and print what was written and the reward of the demonstrations."""
    try:
        paths = write_sandbox_dataset(
            args.out, rows=args.rows, seed=args.seed, image_size=args.image_size, rows_per_file=args.rows_per_file
        )
    except ValueError as exc:
        print(f"make-sandbox-data: {exc}")
        return 2
    rows = list(iter_rows(args.rows, args.seed))
    kinds = collections.Counter(name for row in rows for name in row.defects)
    summary = summarize_rewards({"scene_json": r.doc.to_json(), "demonstration": r.demonstration} for r in rows)
    print(f"wrote {args.rows} rows ({args.image_size}x{args.image_size}) to {len(paths)} file(s) in {args.out}")
    for path in paths:
        print(f"  {path}")
    print("defects injected: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    print(
        f"sandbox judge, mean of five dimensions: preliminary (do nothing) {summary.do_nothing_mean:.2f}, "
        f"demonstration {summary.demonstration_mean:.2f}"
    )
    print(
        json.dumps(
            {
                "rows": args.rows,
                "files": [str(p) for p in paths],
                "do_nothing_mean": round(summary.do_nothing_mean, 4),
                "demonstration_mean": round(summary.demonstration_mean, 4),
            }
        )
    )
    return 0
