"""The reading order of one epoch: a pure function of the unit sizes, the seed and the epoch.

Because the order is recomputed from these alone, resuming only needs ``(epoch, position)``. Permutations come
from ``PCG64`` raw output (a stream NumPy keeps stable across versions) sorted stably, not from
``Generator.permutation``, whose algorithm NumPy may change.

* Sources with cheap random access (JSONL, HF on disk): one permutation of all rows, read in blocks of
  ``buffer_rows``.
* Sources read unit by unit (parquet row groups): the units are permuted, consecutive units are grouped into
  blocks of at least ``buffer_rows`` rows, and the rows of each block are permuted. Memory holds one block.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_UNITS, _ROWS, _BLOCK = 0, 1, 2


def stable_permutation(n: int, *key: int) -> np.ndarray:
    """A permutation of ``range(n)`` determined by ``key`` (non-negative integers)."""
    if n <= 1:
        return np.arange(n, dtype=np.int64)
    generator = np.random.PCG64(np.random.SeedSequence([int(k) for k in key]))
    return np.argsort(generator.random_raw(n), kind="stable")


def _refs(units: Sequence[int], order: np.ndarray) -> np.ndarray:
    """``(n, 2)`` array of ``(unit, row)`` for the units in ``order``, rows ascending."""
    sizes = np.asarray(units, dtype=np.int64)[order]
    total = int(sizes.sum())
    unit_col = np.repeat(order.astype(np.int64), sizes)
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
    row_col = np.arange(total, dtype=np.int64) - starts
    return np.stack([unit_col, row_col], axis=1)


def epoch_blocks(
    unit_sizes: Sequence[int],
    *,
    random_access: bool,
    shuffle: bool,
    seed: int,
    epoch: int,
    buffer_rows: int,
) -> list[np.ndarray]:
    """The epoch's rows as consecutive blocks, each an ``(n, 2)`` array of ``(unit, row)`` references."""
    n_units = len(unit_sizes)
    if n_units == 0:
        return []
    if random_access:
        refs = _refs(unit_sizes, np.arange(n_units))
        if shuffle:
            refs = refs[stable_permutation(len(refs), seed, epoch, _ROWS)]
        return [refs[i : i + buffer_rows] for i in range(0, len(refs), buffer_rows)]
    unit_order = stable_permutation(n_units, seed, epoch, _UNITS) if shuffle else np.arange(n_units)
    blocks: list[np.ndarray] = []
    group: list[int] = []
    rows = 0
    for unit in unit_order:
        group.append(int(unit))
        rows += unit_sizes[unit]
        if rows >= buffer_rows:
            blocks.append(_refs(unit_sizes, np.asarray(group)))
            group, rows = [], 0
    if group:
        blocks.append(_refs(unit_sizes, np.asarray(group)))
    if shuffle:
        blocks = [b[stable_permutation(len(b), seed, epoch, _BLOCK, i)] for i, b in enumerate(blocks)]
    return blocks
