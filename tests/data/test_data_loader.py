"""Order, shuffling and exact resume of the loader."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from easyr1.data import EditDataLoader, build_dataloader, build_dataset
from easyr1.data.order import epoch_blocks, stable_permutation


@pytest.fixture
def seed_dir(tmp_path, helpers):
    """23 rows in 3 files with row groups of 4, 3 and 5 rows (9 units)."""
    helpers.write_seed_parquet(helpers.seed_rows(8, 0, size=(16, 16)), tmp_path / "a.parquet", row_group_size=4)
    helpers.write_seed_parquet(helpers.seed_rows(6, 8, size=(16, 16)), tmp_path / "b.parquet", row_group_size=3)
    helpers.write_seed_parquet(helpers.seed_rows(9, 14, size=(16, 16)), tmp_path / "c.parquet", row_group_size=5)
    return tmp_path


@pytest.fixture
def jsonl_file(tmp_path, helpers):
    return helpers.write_jsonl(tmp_path / "j", 21)


def epoch_ids(cfg, epoch):
    return [s.id for _, s in build_dataset(cfg, "train").iter_epoch(epoch)]


def cfg_for(kind, path, helpers, **kw):
    base = {"shuffle": True, "seed": 3, "shuffle_buffer_rows": 6, "read_batch_rows": 4}
    base.update(kw)
    if kind == "jsonl":
        base["format"] = "jsonl"
    return helpers.data_config(path, **base)


@pytest.mark.parametrize("kind", ["seed", "jsonl"])
def test_each_row_once_per_epoch_and_shuffle_by_seed_and_epoch(kind, seed_dir, jsonl_file, helpers):
    path = seed_dir if kind == "seed" else jsonl_file
    n = 23 if kind == "seed" else 21
    cfg = cfg_for(kind, path, helpers)
    e0, e1 = epoch_ids(cfg, 0), epoch_ids(cfg, 1)
    assert sorted(e0) == sorted(e1) == sorted(f"row-{i}" for i in range(n))
    assert e0 != e1, "epochs must differ"
    assert epoch_ids(cfg_for(kind, path, helpers), 0) == e0, "same seed and epoch, same order"
    assert epoch_ids(cfg_for(kind, path, helpers, seed=4), 0) != e0, "another seed, another order"
    assert epoch_ids(cfg_for(kind, path, helpers, decode_threads=0, read_batch_rows=1), 1) == e1
    stored = epoch_ids(cfg_for(kind, path, helpers, shuffle=False), 5)
    assert stored == [f"row-{i}" for i in range(n)]


def _drain(loader, batches=None):
    out = []
    for batch in itertools.islice(iter(loader), batches):
        out.append([s.id for s in batch])
    return out


@pytest.mark.parametrize("kind", ["seed", "jsonl"])
@pytest.mark.parametrize("stop_after", [1, 3, 4, 6])
def test_resume_mid_epoch_gives_exactly_the_remaining_batches(kind, stop_after, seed_dir, jsonl_file, helpers):
    path = seed_dir if kind == "seed" else jsonl_file
    cfg = cfg_for(kind, path, helpers, rollout_batch_size=5)
    reference = build_dataloader(cfg)
    full = _drain(reference) + _drain(reference)  # two epochs of 4 batches
    assert len(full) == 8

    first = build_dataloader(cfg)
    seen = []
    while len(seen) < stop_after:  # stop_after=6 crosses into the second epoch
        for batch in first:
            seen.append([s.id for s in batch])
            if len(seen) == stop_after:
                break
    state = first.state_dict()

    resumed = build_dataloader(cfg_for(kind, path, helpers, rollout_batch_size=5, decode_threads=1))
    resumed.load_state_dict(state)
    assert resumed.epoch == (1 if stop_after > 4 else 0)
    rest = _drain(resumed)
    if state["epoch"] == 0:
        rest += _drain(resumed)
    assert seen + rest == full


def test_resume_with_bad_rows_restores_counts(tmp_path, helpers):
    rows = helpers.seed_rows(20, size=(16, 16))
    for i in (3, 7, 15):
        rows[i]["src_img_b64"] = "!!"
    helpers.write_seed_parquet(rows, tmp_path / "x.parquet", row_group_size=4)
    cfg = helpers.data_config(tmp_path, on_bad_row="skip", shuffle_buffer_rows=4, rollout_batch_size=4, seed=9)
    whole = build_dataloader(cfg)
    all_batches = _drain(whole)
    assert len(all_batches) == 4 and whole.stats.bad_rows["undecodable_base64"] == 3
    final_metrics = whole.metrics()

    first = build_dataloader(cfg)
    head = _drain(first, 2)
    resumed = build_dataloader(cfg)
    resumed.load_state_dict(first.state_dict())
    tail = _drain(resumed)
    assert head + tail == all_batches
    assert resumed.stats.bad_rows["undecodable_base64"] == 3
    assert resumed.metrics()["data/bad_rows/undecodable_base64"] == 3.0
    assert final_metrics["data/epoch"] == resumed.metrics()["data/epoch"] == 1.0


def test_leaving_mid_epoch_and_iterating_again_continues(seed_dir, helpers):
    cfg = cfg_for("seed", seed_dir, helpers, rollout_batch_size=4)
    reference = _drain(build_dataloader(cfg))
    loader = build_dataloader(cfg)
    head = _drain(loader, 2)
    assert loader.epoch == 0 and loader.batches_in_epoch == 2
    assert head + _drain(loader) == reference
    assert loader.epoch == 1 and loader.position == 0


def test_state_refused_when_order_changed(seed_dir, helpers):
    loader = build_dataloader(cfg_for("seed", seed_dir, helpers))
    _drain(loader, 1)
    state = loader.state_dict()
    other = build_dataloader(cfg_for("seed", seed_dir, helpers, seed=99))
    with pytest.raises(ValueError, match="seed"):
        other.load_state_dict(state)
    helpers.write_seed_parquet(helpers.seed_rows(2, 50), seed_dir / "d.parquet")
    grown = build_dataloader(cfg_for("seed", seed_dir, helpers))
    with pytest.raises(ValueError, match="fingerprint"):
        grown.load_state_dict(state)


def test_batch_sizes_drop_last_and_validation(seed_dir, helpers):
    cfg = cfg_for("seed", seed_dir, helpers, rollout_batch_size=5, val_files=str(seed_dir), val_batch_size=10)
    train = build_dataloader(cfg)
    assert len(train) == 4
    assert [len(b) for b in _drain(train)] == [5, 5, 5, 5]
    val = build_dataloader(cfg, "val")
    batches = _drain(val)
    assert [len(b) for b in batches] == [10, 10, 3]
    assert [i for b in batches for i in b] == [f"row-{i}" for i in range(23)], "validation is never shuffled"
    whole = build_dataloader(helpers.data_config(seed_dir, val_files=str(seed_dir), val_batch_size=-1), "val")
    assert [len(b) for b in _drain(whole)] == [23]
    with pytest.raises(ValueError):
        EditDataLoader(whole.dataset, 0)


def test_blocks_hold_whole_units_and_enough_rows():
    sizes = [4, 4, 3, 3, 5, 5, 1]
    for epoch in range(3):
        blocks = epoch_blocks(sizes, random_access=False, shuffle=True, seed=1, epoch=epoch, buffer_rows=6)
        refs = np.concatenate(blocks)
        assert sorted(map(tuple, refs.tolist())) == sorted((u, r) for u, n in enumerate(sizes) for r in range(n))
        for block in blocks[:-1]:
            units = set(block[:, 0].tolist())
            assert len(block) == sum(sizes[u] for u in units) >= 6
    random_blocks = epoch_blocks(sizes, random_access=True, shuffle=True, seed=1, epoch=0, buffer_rows=6)
    assert [len(b) for b in random_blocks] == [6, 6, 6, 6, 1]


def test_stable_permutation_is_a_deterministic_permutation():
    p = stable_permutation(1000, 7, 2, 1)
    assert sorted(p.tolist()) == list(range(1000))
    assert (p == stable_permutation(1000, 7, 2, 1)).all()
    assert not (p == stable_permutation(1000, 7, 3, 1)).all()


def test_state_is_json_and_resumes_after_a_round_trip(seed_dir, helpers):
    import json

    cfg = cfg_for("seed", seed_dir, helpers, rollout_batch_size=3)
    reference = _drain(build_dataloader(cfg))
    loader = build_dataloader(cfg)
    head = _drain(loader, 2)
    state = json.loads(json.dumps(loader.state_dict()))
    resumed = build_dataloader(cfg)
    resumed.load_state_dict(state)
    assert head + _drain(resumed) == reference
