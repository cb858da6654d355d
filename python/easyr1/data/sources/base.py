"""The interface every row source implements, and file resolution shared by the file-based sources."""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import FieldError
from ..rows import RowContext

RowRef = tuple[int, int]
"""``(unit index, row index inside the unit)``."""


@dataclass(frozen=True)
class Unit:
    """The smallest piece a source reads at once: a parquet row group, a JSONL file, a whole HF dataset."""

    file: str
    key: int
    """Source-specific: the row group index for parquet, otherwise 0."""
    num_rows: int
    first_row: int
    """Row number (inside ``file``) of the unit's first row."""


@dataclass
class RawRow:
    """A row fetched but not decoded: ``load()`` yields its column values (cheap), or the record's own error."""

    ctx: RowContext
    load: Callable[[], Mapping[str, Any]]
    error: FieldError | None = None


class RowSource(ABC):
    """Rows split into units.

    ``random_access`` tells the shuffler whether single rows can be fetched cheaply from anywhere (JSONL, HF
    datasets on disk) or whether a whole unit is read at once (parquet row groups), which bounds memory by the
    units being read.
    """

    random_access: bool = False
    units: list[Unit]
    description: str

    @property
    def num_rows(self) -> int:
        return sum(u.num_rows for u in self.units)

    @abstractmethod
    def fetch(self, refs: Sequence[RowRef]) -> list[RawRow]:
        """Raw rows for ``refs``, in that order."""

    def release_memory(self) -> None:
        """Called after each block: hand freed buffers back to the system (no-op unless a source pools memory)."""
        return None

    def fingerprint(self) -> str:
        """Identifies the data layout (files, unit sizes), so a resumed loader can check it reads the same rows."""
        digest = hashlib.sha256()
        for unit in self.units:
            digest.update(f"{os.path.basename(unit.file)}|{unit.key}|{unit.num_rows}\n".encode())
        return digest.hexdigest()[:16]


def resolve_files(path: str, pattern: str) -> list[str]:
    """A file, or the files under a folder matching ``pattern`` (sorted; ``**`` recurses)."""
    from ..errors import DataError

    p = Path(path)
    if p.is_file():
        return [str(p)]
    if p.is_dir():
        files = sorted(str(f) for f in p.glob(pattern) if f.is_file())
        if not files:
            raise DataError(f"{path}: no files match {pattern!r}")
        return files
    raise DataError(f"{path}: no such file or folder")
