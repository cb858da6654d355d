"""Editor pool scaling: k = 1, 2, 4 replicas of an editor with a fixed per-image latency, on uneven batches.

Each replica is a :class:`~easyr1.testing.simulated_editor.SimulatedEditor` that sleeps ``--latency`` seconds per image
(one sleep per batch, like a GPU whose time grows with the batch), so the measurement is the pool's scheduling —
work queue, balanced chunks, de-duplication, Ray round trips — not this machine's two CPU cores. The workload is a
fixed list of ``edit()`` calls of uneven sizes (not multiples of k or of the batch size), each with a few exact
duplicates (the same image, instruction and seed), the same for every k. The k = 1 pool is the baseline.

Prints a table, then one JSON line::

    {"efficiency_k2", "efficiency_k4", "dedupe_saved", "throughput_k1", ...}

``efficiency_k = throughput_k / (k × throughput_1)``. Goal (issue 9): ≥ 0.9 at k = 2 and 4 with a simulated latency
≥ 100 ms, and every duplicate edited once (``dedupe_saved`` equals the number of duplicates sent).

    python benchmarks/editor_pool.py                    # 100 ms per image, batch 4
    python benchmarks/editor_pool.py --latency 0.2
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import tempfile
import time

import numpy as np
from PIL import Image

from easyr1.config.cluster import PoolPlacement
from easyr1.core.types import EditRequest
from easyr1.editing.pool import EditorPool
from easyr1.testing.simulated_editor import SimulatedEditor

CALL_SIZES = (37, 50, 23, 45, 29)
"""Unique requests per ``edit()`` call: uneven, none a multiple of 4."""
DUPLICATES_PER_CALL = 3
"""Exact copies of earlier requests added to each call."""
GOAL = 0.9


def workload(image_side: int) -> tuple[list[list[EditRequest]], int, int]:
    """The calls, the number of unique requests and the number of duplicates."""
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, size=(image_side, image_side, 3), dtype=np.uint8)) for _ in range(8)]
    calls, unique, duplicates = [], 0, 0
    for c, size in enumerate(CALL_SIZES):
        call = [
            EditRequest(images[i % len(images)], f"re-edit {c}.{i}: move the shadow left", 1000 * c + i, f"{c}/{i}")
            for i in range(size)
        ]
        for d in range(DUPLICATES_PER_CALL):
            original = call[(7 * d + 3) % size]
            call.insert(
                (11 * d + 5) % len(call), EditRequest(original.image, original.instruction, original.seed, "dup")
            )
        calls.append(call)
        unique += size
        duplicates += DUPLICATES_PER_CALL
    return calls, unique, duplicates


def measure(k: int, calls: list[list[EditRequest]], latency_s: float, batch_size: int) -> dict[str, float]:
    factory = functools.partial(SimulatedEditor, latency_s)
    placement = PoolPlacement(num_cpus_per_worker=0.5)
    with EditorPool(factory, num_replicas=k, batch_size=batch_size, placement=placement) as pool:
        pool.edit(calls[0][:k])  # warm: every replica has answered once
        warm = pool.stats()
        started = time.perf_counter()
        results = [pool.edit(call) for call in calls]
        wall = time.perf_counter() - started
        stats = pool.stats()
    requests = sum(len(c) for c in calls)
    assert [len(r) for r in results] == [len(c) for c in calls], "a call lost or gained results"
    failed = sum(not r.ok for rs in results for r in rs)
    return {
        "k": k,
        "requests": requests,
        "edited": stats["unique"] - warm["unique"],
        "dedupe_saved": stats["dedupe_saved"] - warm["dedupe_saved"],
        "failed": failed,
        "wall_s": wall,
        "throughput": requests / wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.1, help="simulated seconds per image (default 0.1)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per replica call (default 4)")
    parser.add_argument("--replicas", default="1,2,4", help="k values, the first is the baseline (default 1,2,4)")
    parser.add_argument("--image-side", type=int, default=64, help="side of the test images (default 64)")
    args = parser.parse_args()
    ks = [int(k) for k in args.replicas.split(",")]

    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    temp_dir = tempfile.mkdtemp(prefix="rb", dir="/tmp")
    ray.init(num_cpus=max(2, max(ks) // 2), include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False)
    try:
        calls, unique, duplicates = workload(args.image_side)
        rows = [measure(k, calls, args.latency, args.batch_size) for k in ks]
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)

    base = rows[0]["throughput"] / ks[0]
    print(
        f"editor pool: {len(calls)} calls of {[len(c) for c in calls]} requests, latency {args.latency * 1000:.0f} ms"
    )
    print(f"{'k':>3} {'requests':>9} {'edited':>7} {'deduped':>8} {'failed':>7} {'wall s':>8} {'req/s':>8} {'eff':>6}")
    summary: dict[str, float | int | bool | str] = {"benchmark": "editor_pool", "latency_s": args.latency}
    for row in rows:
        efficiency = row["throughput"] / (row["k"] * base)
        row["efficiency"] = efficiency
        print(
            f"{row['k']:>3} {row['requests']:>9} {row['edited']:>7} {row['dedupe_saved']:>8} {row['failed']:>7} "
            f"{row['wall_s']:>8.2f} {row['throughput']:>8.2f} {efficiency:>6.3f}"
        )
        summary[f"throughput_k{row['k']}"] = round(row["throughput"], 3)
        if row["k"] != ks[0]:
            summary[f"efficiency_k{row['k']}"] = round(efficiency, 3)
    summary["requests"] = rows[0]["requests"]
    summary["unique"] = unique
    summary["dedupe_saved"] = rows[0]["dedupe_saved"]
    summary["duplicates_sent"] = duplicates
    summary["duplicates_edited_once"] = all(r["dedupe_saved"] == duplicates and r["edited"] == unique for r in rows)
    summary["goal"] = GOAL
    summary["pass"] = bool(
        summary["duplicates_edited_once"]
        and all(r["failed"] == 0 for r in rows)
        and all(r["efficiency"] >= GOAL for r in rows[1:])
    )
    print(json.dumps(summary))
    return 0 if summary["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
