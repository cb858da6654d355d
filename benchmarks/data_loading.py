"""Seed-parquet reading: a reader in the style of the reference vs ``easyr1.data``.

Generates seed-format parquet at two sizes (N and 10·N rows, ~512 px photo-like PNG images, base64 in the rows),
reads the small set with a reference-style reader (pandas ``read_parquet`` + ``iterrows``, every image decoded and
kept in a per-file cache) and with ours, and the large set with ours. Each read runs in its own subprocess so its
peak RSS is clean. Prints a table, then one JSON line::

    {"baseline_rows_per_s", "ours_rows_per_s", "speedup", "rss_small_mb", "rss_large_mb", ...}

Goals (issue 6): ``speedup >= 5``; ``rss_large_mb <= 1.2 * rss_small_mb`` (ours).

    python benchmarks/data_loading.py            # N=256 rows, 128 rows per file
    python benchmarks/data_loading.py --rows 64  # quicker
"""

from __future__ import annotations

import argparse
import ast
import base64
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

POOL_IMAGES = 48


def photo_like(seed: int, size: int) -> Image.Image:
    """Smooth gradients, soft shapes and sensor-like noise: compresses like a photo (~0.5 MB PNG at 512 px)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    channels = []
    for _ in range(3):
        a, b, c = rng.uniform(-1, 1, 3)
        channels.append(128 + 90 * np.sin(3 * a * x + 2 * b * y + c) * np.cos(2 * b * x - a * y))
    image = Image.fromarray(np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = rng.integers(0, size, 2)
        w, h = rng.integers(size // 16, size // 3, 2)
        draw.ellipse([int(x0), int(y0), int(x0 + w), int(y0 + h)], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    image = image.filter(ImageFilter.GaussianBlur(2))
    noise = rng.normal(0, 4, (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(image, np.float32) + noise, 0, 255).astype(np.uint8))


def write_dataset(folder: str, rows: int, rows_per_file: int, pool: list[str], size: int) -> None:
    from easyr1.data.writers import write_seed_parquet

    os.makedirs(folder, exist_ok=True)
    for file_index, start in enumerate(range(0, rows, rows_per_file)):
        batch = []
        for i in range(start, min(rows, start + rows_per_file)):
            batch.append(
                {
                    "omni_edit_id": f"omni-{i:07d}",
                    "task": ("add", "remove", "replace", "style")[i % 4],
                    "width": size,
                    "height": size,
                    "src_img_b64": pool[i % len(pool)],
                    "edit_prompt": [f"edit {i}", f"a detailed description of edit number {i} for this image"],
                    "qwen_edited_img_b64": pool[(7 * i + 3) % len(pool)],
                }
            )
        write_seed_parquet(batch, os.path.join(folder, f"batch_{file_index:05d}.parquet"))


# ---------------------------------------------------------------------------------------------------------------
# The reference style: whole files through pandas, iterrows, decode everything, keep it all in a per-file cache.


class ReferenceStyleReader:
    def __init__(self, files: list[str]):
        self.files = files
        self._cache: dict[str, list[dict]] = {}

    @staticmethod
    def _image(text: str) -> Image.Image:
        if text.startswith("data:"):
            text = text.split(",", 1)[1]
        try:
            return Image.open(io.BytesIO(base64.b64decode(text))).convert("RGB")
        except Exception:
            return Image.new("RGB", (512, 512), "white")  # what the reference did (we never do this)

    def _load(self, file: str) -> list[dict]:
        import pandas as pd

        frame = pd.read_parquet(file)
        rows = []
        for _, row in frame.iterrows():
            prompts = row["edit_prompt"]
            prompts = ast.literal_eval(prompts) if isinstance(prompts, str) else list(prompts)
            rows.append(
                {
                    "id": row["omni_edit_id"],
                    "instruction": prompts[1],
                    "source": self._image(row["src_img_b64"]),
                    "edited": self._image(row["qwen_edited_img_b64"]),
                }
            )
        return rows

    def __iter__(self):
        for file in self.files:
            if file not in self._cache:
                self._cache[file] = self._load(file)
            yield from self._cache[file]


# ---------------------------------------------------------------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    """Read one dataset with one reader; print rows, seconds (imports excluded) and peak RSS as JSON."""
    import glob

    import pandas  # noqa: F401 - imported before the clock starts, like ours below
    import pyarrow.parquet as pq

    from easyr1.config import DataConfig
    from easyr1.data import build_dataset

    files = sorted(glob.glob(os.path.join(args.path, "*.parquet")))
    start = time.perf_counter()
    rows = 0
    if args.child == "baseline":
        for row in ReferenceStyleReader(files):
            rows += row["source"].size[0] > 0
    elif args.child == "floor":
        # The least any reader must do, single-threaded: base64-decode and decode both images of every row.
        for file in files:
            for batch in pq.ParquetFile(file).iter_batches(
                batch_size=32, columns=["src_img_b64", "qwen_edited_img_b64"]
            ):
                for column in batch.columns:
                    for value in column:
                        Image.open(io.BytesIO(base64.b64decode(value.as_py()))).load()
                rows += batch.num_rows
    else:
        cfg = replace(DataConfig(), train_files=args.path, shuffle=True, decode_threads=args.threads)
        for _, sample in build_dataset(cfg, "train").iter_epoch(0):
            rows += sample.source_image.size[0] > 0
    seconds = time.perf_counter() - start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "seconds": seconds, "rss_mb": rss_mb}))


def run_child(kind: str, path: str, threads: int | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--path", path]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["rows_per_s"] = result["rows"] / result["seconds"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=256, help="N: rows of the small set (the large one has 10·N)")
    parser.add_argument("--rows-per-file", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None, help="decode threads of ours (default: the config's)")
    parser.add_argument("--workdir", default=None, help="where to write the data (default: a temp folder)")
    parser.add_argument("--child", choices=["baseline", "floor", "ours"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--path", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from easyr1.config import DataConfig
    from easyr1.data.dataset import resolve_decode_threads

    threads = resolve_decode_threads(DataConfig().decode_threads if args.threads is None else args.threads)
    if args.child:
        args.threads = threads
        child(args)
        return

    workdir = args.workdir or tempfile.mkdtemp(prefix="easyr1-bench-data-")
    try:
        started = time.perf_counter()
        pool = []
        for i in range(POOL_IMAGES):
            buffer = io.BytesIO()
            photo_like(i, args.image_size).save(buffer, "PNG")
            pool.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
        small, large = os.path.join(workdir, "small"), os.path.join(workdir, "large")
        write_dataset(small, args.rows, args.rows_per_file, pool, args.image_size)
        write_dataset(large, 10 * args.rows, args.rows_per_file, pool, args.image_size)
        mean_kb = sum(len(p) for p in pool) / len(pool) / 1024
        print(
            f"data: {args.rows} and {10 * args.rows} rows, {args.image_size}px PNG, base64 {mean_kb:.0f} KB per image, "
            f"{args.rows_per_file} rows per file, generated in {time.perf_counter() - started:.1f}s"
        )

        results = {
            "baseline small": run_child("baseline", small),
            "decode floor small": run_child("floor", small),
            "ours small, 1 thread": run_child("ours", small, 0),
            f"ours small, {threads} threads": run_child("ours", small, threads),
            f"ours large, {threads} threads": run_child("ours", large, threads),
        }
        print(f"{'reader':<28}{'rows':>8}{'seconds':>10}{'rows/s':>10}{'peak RSS MB':>14}")
        for name, r in results.items():
            print(f"{name:<28}{r['rows']:>8}{r['seconds']:>10.2f}{r['rows_per_s']:>10.1f}{r['rss_mb']:>14.0f}")
        baseline = results["baseline small"]
        ours_small = results[f"ours small, {threads} threads"]
        ours_large = results[f"ours large, {threads} threads"]
        summary = {
            "baseline_rows_per_s": round(baseline["rows_per_s"], 2),
            "ours_rows_per_s": round(ours_small["rows_per_s"], 2),
            "speedup": round(ours_small["rows_per_s"] / baseline["rows_per_s"], 2),
            "rss_small_mb": round(ours_small["rss_mb"], 1),
            "rss_large_mb": round(ours_large["rss_mb"], 1),
            "ours_large_rows_per_s": round(ours_large["rows_per_s"], 2),
            "ours_single_thread_rows_per_s": round(results["ours small, 1 thread"]["rows_per_s"], 2),
            "baseline_rss_small_mb": round(baseline["rss_mb"], 1),
            "floor_rows_per_s": round(results["decode floor small"]["rows_per_s"], 2),
            "rows_small": args.rows,
            "rows_large": 10 * args.rows,
            "decode_threads": threads,
            "cpu_count": os.cpu_count(),
        }
        print(json.dumps(summary))
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
