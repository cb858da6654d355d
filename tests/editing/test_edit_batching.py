"""Chunking, failure isolation and output checks shared by the editors and the pool."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from easyr1.core.types import EditRequest, EditResult
from easyr1.editing.batching import balanced_chunks, check_output, edit_isolating_failures, group_indices


@given(n=st.integers(0, 200), size=st.integers(1, 16), workers=st.integers(1, 8))
def test_balanced_chunks_cover_each_item_once_and_balance(n, size, workers):
    items = list(range(n))
    chunks = balanced_chunks(items, size, workers)
    assert [x for c in chunks for x in c] == items
    if n:
        sizes = [len(c) for c in chunks]
        assert max(sizes) <= size and min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
        assert len(chunks) % workers == 0 or len(chunks) == n


def test_group_indices_keeps_first_appearance_order():
    assert group_indices(["a", "b", "a", "c", "b"]) == [[0, 2], [1, 4], [3]]


def _request(text: str) -> EditRequest:
    return EditRequest(image=None, instruction=text, seed=0, key=text)  # type: ignore[arg-type]


def test_isolation_fails_only_the_items_that_fail_alone():
    calls = []

    def edit(batch):
        calls.append(len(batch))
        if any("bad" in r.instruction for r in batch):
            raise RuntimeError("boom")
        return [EditResult(image=None, ok=True, info={"text": r.instruction}) for r in batch]

    batch = [_request(t) for t in ["a", "b", "bad", "c", "d", "bad2", "e"]]
    results = edit_isolating_failures(edit, batch)
    assert [r.ok for r in results] == [True, True, False, True, True, False, True]
    assert [r.info.get("text") for r in results if r.ok] == ["a", "b", "c", "d", "e"]
    assert all(r.reason == "exception" and "boom" in r.info["error"] for r in results if not r.ok)
    assert calls[0] == 7 and len(calls) < 2 * 7


def test_isolation_rejects_a_wrong_number_of_results():
    results = edit_isolating_failures(lambda batch: [], [_request("a"), _request("b")])
    assert [r.reason for r in results] == ["exception", "exception"]


@pytest.mark.parametrize(
    ("pixels", "reason"),
    [
        (np.full((8, 8, 3), np.nan, dtype=np.float32), "nan_output"),
        (np.zeros((8, 8, 3), dtype=np.float32), "blank_output"),
        (np.full((8, 8, 3), 0.5, dtype=np.float32), "constant_output"),
        (np.linspace(0, 1, 192, dtype=np.float32).reshape(8, 8, 3), None),
    ],
)
def test_check_output(pixels, reason):
    problem = check_output(pixels)
    assert (problem[0] if problem else None) == reason
