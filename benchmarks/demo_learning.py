"""Does the embedded default learn? Runs ``easyr1 demo`` for several seeds and reports, per seed, the wall time,
the peak RSS of the whole process tree (driver + Ray workers) and the mean reward over the first vs last 20 % of
GRPO steps. Prints a table, then one JSON line.

    python benchmarks/demo_learning.py --seeds 0 1 2 --out runs/demo-bench

Targets (issue: driver): under 10 minutes and 8 GB peak RSS per run on a 2-core CPU; last-20 % reward/mean exceeds
the first 20 % by ≥ 1.0 for each seed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil


def tree_rss_mb(root: psutil.Process) -> float:
    total = 0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += proc.memory_info().rss
    return total / 2**20


def run_seed(seed: int, out: Path, extra: list[str]) -> dict:
    run_dir = out / f"seed{seed}"
    cmd = [sys.executable, "-m", "easyr1", "demo", "--out", str(run_dir), "--seed", str(seed), *extra]
    start = time.perf_counter()
    peak = 0.0
    stop = threading.Event()
    with open(out / f"seed{seed}.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        root = psutil.Process(proc.pid)

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, tree_rss_mb(root))
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rc = proc.wait()
        stop.set()
        sampler.join()
    wall = time.perf_counter() - start
    summary = json.loads((run_dir / "demo_summary.json").read_text()) if rc == 0 else {}
    first = summary.get("first", {}).get("reward/mean", float("nan"))
    last = summary.get("last", {}).get("reward/mean", float("nan"))
    return {
        "seed": seed,
        "rc": rc,
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(peak, 1),
        "steps": summary.get("steps"),
        "first": round(first, 3),
        "last": round(last, 3),
        "improvement": round(last - first, 3),
        "judge_first": round(sum(summary.get("first", {}).get(f"reward/{d}", 0) for d in DIMS) / 5, 3),
        "judge_last": round(sum(summary.get("last", {}).get(f"reward/{d}", 0) for d in DIMS) / 5, 3),
        "format_first": round(summary.get("first", {}).get("reward/format", float("nan")), 3),
        "format_last": round(summary.get("last", {}).get("reward/format", float("nan")), 3),
    }


DIMS = ("physical_geometric", "environment_context", "cultural_social", "logical_causal", "target_attribution")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/demo-bench")
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides passed to easyr1 demo")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = [run_seed(seed, out, args.overrides) for seed in args.seeds]
    header = f"{'seed':>4} {'rc':>3} {'wall s':>8} {'peak RSS MB':>12} {'steps':>6} {'first':>7} {'last':>7} {'Δ':>7} {'judge Δ':>8} {'format Δ':>9}"
    print(header)
    for r in results:
        print(
            f"{r['seed']:>4} {r['rc']:>3} {r['wall_s']:>8.1f} {r['peak_rss_mb']:>12.1f} {r['steps']!s:>6} {r['first']:>7.2f} "
            f"{r['last']:>7.2f} {r['improvement']:>+7.2f} {r['judge_last'] - r['judge_first']:>+8.2f} "
            f"{r['format_last'] - r['format_first']:>+9.2f}"
        )
    ok = all(
        r["rc"] == 0 and r["improvement"] >= 1.0 and r["wall_s"] < 600 and r["peak_rss_mb"] < 8192 for r in results
    )
    print(json.dumps({"benchmark": "demo_learning", "runs": results, "targets_met": ok}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
