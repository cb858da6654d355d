"""``EditDataLoader``: fixed-size batches of :class:`EditSample`, epoch tracking, exact resume."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import closing
from typing import Any

from easyr1.core.types import EditSample

from .dataset import EditDataset, build_dataset
from .errors import DataStats

STATE_VERSION = 1


class EditDataLoader:
    """Batches of ``batch_size`` samples from an :class:`EditDataset`.

    Iterating yields the batches left in the current epoch, then advances ``epoch``; iterate again for the next
    epoch. ``state_dict()`` taken between batches and given to ``load_state_dict()`` of a fresh loader over the
    same data continues with exactly the batches that would have come next.
    """

    def __init__(self, dataset: EditDataset, batch_size: int, *, drop_last: bool = True):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, not {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.epoch = 0
        """The epoch being read (0-based)."""
        self.position = 0
        """Rows of the epoch's order consumed by the batches yielded so far."""
        self.batches_in_epoch = 0
        self.stats = DataStats()
        """Counters of the current epoch: rows read, bad rows by reason, prompts dropped as too long."""

    def __len__(self) -> int:
        """Batches per epoch when no row is bad or too long (an upper bound otherwise)."""
        rows = self.dataset.num_rows
        return rows // self.batch_size if self.drop_last else math.ceil(rows / self.batch_size)

    def __iter__(self) -> Iterator[list[EditSample]]:
        if self.position == 0:
            self.stats = DataStats()
            self.batches_in_epoch = 0
        batch: list[EditSample] = []
        samples = self.dataset.iter_epoch(self.epoch, self.position, stats=self.stats)
        with closing(samples):  # stops the decoding threads at once when the caller leaves mid-epoch
            for next_position, sample in samples:
                batch.append(sample)
                if len(batch) == self.batch_size:
                    self.position = next_position
                    self.batches_in_epoch += 1
                    yield batch
                    batch = []
        if batch and not self.drop_last:
            self.batches_in_epoch += 1
            self.position = self.dataset.num_rows
            yield batch
        self.epoch += 1
        self.position = 0

    def metrics(self, prefix: str = "data") -> dict[str, float]:
        """``{prefix}/epoch`` and the current epoch's counters (see :meth:`DataStats.metrics`)."""
        return {f"{prefix}/epoch": float(self.epoch), **self.stats.metrics(prefix)}

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "epoch": self.epoch,
            "position": self.position,
            "batches_in_epoch": self.batches_in_epoch,
            "stats": self.stats.state_dict(),
            "order": self.dataset.order_key(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue where ``state`` stopped. Raises ``ValueError`` if the data or its order settings changed."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"data loader state version {state.get('version')!r}, expected {STATE_VERSION}")
        expected = self.dataset.order_key()
        saved = state.get("order", {})
        changed = [k for k in expected if saved.get(k) != expected[k]]
        if changed:
            details = ", ".join(f"{k}: saved {saved.get(k)!r}, now {expected[k]!r}" for k in changed)
            raise ValueError(f"cannot resume the {self.dataset.name} data exactly, the order changed ({details})")
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self.batches_in_epoch = int(state.get("batches_in_epoch", 0))
        self.stats = DataStats.from_state_dict(state.get("stats", {}))


def build_dataloader(data_cfg: Any, split: str = "train", processor: Any = None) -> EditDataLoader:
    """Training: batches of ``data.rollout_batch_size``, last partial batch dropped. Validation: batches of
    ``data.val_batch_size`` (``-1`` = everything in one batch), nothing dropped."""
    dataset = build_dataset(data_cfg, split, processor)
    if split == "train":
        return EditDataLoader(dataset, data_cfg.rollout_batch_size, drop_last=True)
    size = data_cfg.val_batch_size if data_cfg.val_batch_size != -1 else max(1, dataset.num_rows)
    return EditDataLoader(dataset, size, drop_last=False)
