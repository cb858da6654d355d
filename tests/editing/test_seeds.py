"""Seeds are per item (or per group), deterministic, independent of batching; identity is pixels+text+seed."""

from __future__ import annotations

from easyr1.config.editing import ImageEditConfig
from easyr1.core.seeds import derive_seed, edit_seed, request_identity
from easyr1.core.types import EditRequest


def test_derive_seed_is_deterministic_and_spread():
    assert derive_seed(0, "a", 1) == derive_seed(0, "a", 1)
    seeds = {derive_seed(0, "sample", i) for i in range(100)}
    assert len(seeds) == 100
    assert derive_seed(1, "sample", 0) != derive_seed(0, "sample", 0)
    assert all(0 <= s < 2**63 for s in seeds)


def test_per_item_seeds_differ_by_sample_and_reedit_index():
    cfg = ImageEditConfig(seed_mode="per_item", base_seed=7)
    group = [edit_seed(cfg, "row-1", i) for i in range(4)]
    assert len(set(group)) == 4
    assert edit_seed(cfg, "row-2", 0) not in group
    assert group == [edit_seed(cfg, "row-1", i) for i in range(4)]
    assert 0 not in group


def test_per_group_seed_is_shared_by_the_group_only():
    cfg = ImageEditConfig(seed_mode="per_group", base_seed=7)
    assert len({edit_seed(cfg, "row-1", i) for i in range(4)}) == 1
    assert edit_seed(cfg, "row-1", 0) != edit_seed(cfg, "row-2", 0)


def test_identity_is_pixels_instruction_and_seed(make_image):
    a = EditRequest(make_image(1), "add a ball", 3, "x/0", {"scene": 1})
    same = EditRequest(make_image(1), "add a ball", 3, "y/1", {"scene": 2})
    assert request_identity(a) == request_identity(same)
    assert request_identity(a, include_metadata=True) != request_identity(same, include_metadata=True)
    for other in (
        EditRequest(make_image(2), "add a ball", 3, "x/0"),
        EditRequest(make_image(1), "add a cup", 3, "x/0"),
        EditRequest(make_image(1), "add a ball", 4, "x/0"),
        EditRequest(make_image(1, width=32), "add a ball", 3, "x/0"),
    ):
        assert request_identity(other) != request_identity(a)
