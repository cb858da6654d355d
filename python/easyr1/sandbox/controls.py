"""Controls for the learning benchmark (``benchmarks/learning.py``): runs that must *not* learn the repair.

* **Shuffled judge** — :class:`ShufflingJudge` scores a training batch with the sandbox judge, then hands the
  results back in a random order within the batch (validation requests are never shuffled). The reward then
  still has the judge's distribution but no longer belongs to the answer that earned it. It is switched on for a
  run by the environment variable :data:`SHUFFLE_ENV` (``SandboxJudge.from_config`` reads it), so the trainer,
  the scoring pipeline and the reward rules stay untouched. The format rule's part of the reward and the zero
  reward of an answer without ``<Re_edit>`` are computed from the text by the reward pipeline and keep their
  signal: the control removes exactly the judge's information.
* **Blind policy** — :func:`blank_images_in_folder` rewrites a folder of sandbox parquet files with mid-grey
  images of the same size (source and preliminary edit), so the policy trained on it never sees a scene. The
  editor and the judge read the scene document, not the pixels, so rewards are unchanged.

Neither is ever on in the presets; the benchmark sets them per arm.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import random
from collections.abc import Sequence
from pathlib import Path

from ..reward.judge.protocol import JudgeRequest, JudgeResult

logger = logging.getLogger(__name__)

SHUFFLE_ENV = "EASYR1_SANDBOX_SHUFFLE_JUDGE"
"""When set to an integer seed, the sandbox judge shuffles its results within each training batch (a control)."""

TRAIN_KEY_PREFIX = "sandbox-train-"
"""Judge request keys of training rows start with this (``<row id>/<sample>``; sandbox row ids name their split)."""


def shuffle_seed_from_env() -> int | None:
    """The shuffle seed of :data:`SHUFFLE_ENV`, or ``None`` when unset; a malformed value is an error."""
    raw = os.environ.get(SHUFFLE_ENV)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{SHUFFLE_ENV}={raw!r}: expected an integer seed") from None


class ShufflingJudge:
    """Wraps a judge: training requests' results are permuted within each ``score_batch`` call."""

    batch_dependent = True
    """Results depend on the other requests of a call: the streaming scorer calls it as the staged path does."""

    def __init__(self, inner, seed: int):
        self.inner = inner
        self.rng = random.Random(seed)
        self.shuffled_batches = 0

    def score_batch(self, requests: Sequence[JudgeRequest]) -> list[JudgeResult]:
        results = list(self.inner.score_batch(requests))
        train = [i for i, r in enumerate(requests) if str(r.key or "").startswith(TRAIN_KEY_PREFIX)]
        if len(train) > 1:
            order = train[:]
            self.rng.shuffle(order)
            taken = [results[i] for i in order]
            for i, res in zip(train, taken, strict=True):
                results[i] = res
            self.shuffled_batches += 1
        return results

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def _grey_png_b64(b64_png: str) -> str:
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(b64_png))) as image:
        size, mode = image.size, image.mode
    grey = Image.new(mode, size, (128,) * len(Image.new(mode, (1, 1)).getbands()))
    buf = io.BytesIO()
    grey.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def blank_images_in_folder(folder: str | Path, pattern: str = "*.parquet") -> int:
    """Replace the source and preliminary images of every row in ``folder`` by grey images; returns rows changed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    changed = 0
    for path in sorted(Path(folder).glob(pattern)):
        table = pq.read_table(path)
        for column in ("src_img_b64", "qwen_edited_img_b64"):
            values = [_grey_png_b64(v) for v in table.column(column).to_pylist()]
            table = table.set_column(table.schema.get_field_index(column), column, pa.array(values, pa.string()))
        tmp = path.with_suffix(".parquet.tmp")
        pq.write_table(table, tmp, row_group_size=64)
        tmp.replace(path)
        changed += table.num_rows
    logger.info("blanked the images of %d rows in %s", changed, folder)
    return changed
