"""Helpers shared by the editors and the pool: size groups, chunks, failure isolation, output checks."""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TypeVar

import numpy as np

from easyr1.core.types import EditRequest, EditResult

logger = logging.getLogger(__name__)

T = TypeVar("T")

BLANK_LEVEL = 2.0 / 255.0
"""An output whose brightest value stays below this is black; one whose values all lie within this of each other
is constant."""


def group_indices(keys: Sequence[Hashable]) -> list[list[int]]:
    """Indices grouped by key, groups in order of first appearance, indices ascending inside a group."""
    groups: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def chunked(items: Sequence[T], size: int) -> list[list[T]]:
    """Consecutive chunks of at most ``size`` items."""
    if size < 1:
        raise ValueError(f"chunk size must be positive, got {size}")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def balanced_chunks(items: Sequence[T], max_size: int, workers: int) -> list[list[T]]:
    """Split ``items`` into chunks of at most ``max_size`` whose count is a multiple of ``workers`` (when there are
    enough items) and whose sizes differ by at most one — so ``workers`` equally fast replicas finish together."""
    n = len(items)
    if n == 0:
        return []
    count = -(-n // max_size)
    count = min(n, -(-count // workers) * workers)
    base, extra = divmod(n, count)
    out, start = [], 0
    for c in range(count):
        size = base + (1 if c < extra else 0)
        out.append(list(items[start : start + size]))
        start += size
    return out


def edit_isolating_failures(
    edit: Callable[[Sequence[EditRequest]], list[EditResult]], requests: Sequence[EditRequest]
) -> list[EditResult]:
    """Run ``edit`` on the batch; if it raises (or breaks the one-result-per-request contract), bisect the batch
    so that only the requests that fail on their own get a failure result (reason ``exception``)."""
    if not requests:
        return []
    try:
        results = edit(requests)
    except Exception as exc:  # any backend error becomes per-item results, never a lost batch
        if len(requests) == 1:
            logger.warning("edit of %s failed: %r", requests[0].key, exc)
            return [EditResult.failure("exception", error=f"{type(exc).__name__}: {exc}")]
        mid = len(requests) // 2
        return edit_isolating_failures(edit, requests[:mid]) + edit_isolating_failures(edit, requests[mid:])
    if len(results) != len(requests):
        message = f"editor returned {len(results)} results for {len(requests)} requests"
        logger.error(message)
        return [EditResult.failure("exception", error=message) for _ in requests]
    return list(results)


def check_output(pixels: np.ndarray) -> tuple[str, dict[str, str]] | None:
    """Why a decoded output (float array in [0, 1], H×W×C) is unusable, or ``None`` when it is fine.

    ``nan_output`` for NaN/inf values, ``blank_output`` for an all-black image, ``constant_output`` for one flat
    colour — what a diverged or broken diffusion run produces.
    """
    if not np.isfinite(pixels).all():
        return "nan_output", {"detail": "non-finite values in the decoded image"}
    if float(pixels.max()) < BLANK_LEVEL:
        return "blank_output", {"detail": "all-black image"}
    if float(pixels.max() - pixels.min()) < BLANK_LEVEL:
        return "constant_output", {"detail": f"constant image (value {float(pixels.mean()):.3f})"}
    return None


def flatten(groups: Iterable[Iterable[T]]) -> list[T]:
    return [x for g in groups for x in g]
