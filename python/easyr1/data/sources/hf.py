"""Hugging Face datasets saved with ``save_to_disk`` (a ``Dataset`` or one split of a ``DatasetDict``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..rows import RowContext
from .base import RawRow, RowRef, RowSource, Unit


def is_hf_saved_dataset(path: str) -> bool:
    """True for a folder written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    p = Path(path)
    return p.is_dir() and ((p / "dataset_dict.json").is_file() or (p / "state.json").is_file())


class HFDiskSource(RowSource):
    """The Arrow files are memory-mapped, so any row is cheap to fetch; images stay encoded until decoded."""

    random_access = True

    def __init__(self, path: str, split: str):
        import datasets  # heavy import, only for this format

        try:
            loaded = datasets.load_from_disk(path)
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise DataError(f"{path}: not a Hugging Face dataset saved to disk ({exc})") from exc
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise DataError(f"{path}: no split {split!r} (splits: {', '.join(loaded)})")
            loaded = loaded[split]
            self.description = f"{path} (Hugging Face dataset, split {split})"
        else:
            self.description = f"{path} (Hugging Face dataset)"
        self.path = path
        # Arrow format: Image features stay {"bytes", "path"} structs; our decoder handles them.
        self._dataset = loaded.with_format("arrow")
        self.units = [Unit(path, 0, len(loaded), 0)] if len(loaded) else []

    def fetch(self, refs: Sequence[RowRef]) -> list[RawRow]:
        if not refs:
            return []
        table = self._dataset[[row for _, row in refs]]
        return [
            RawRow(RowContext(self.path, row, self.path), _row_loader(table, position))
            for position, (_, row) in enumerate(refs)
        ]


def _row_loader(table, row: int):
    def load() -> Mapping[str, Any]:
        return {name: table.column(j)[row].as_py() for j, name in enumerate(table.column_names)}

    return load
