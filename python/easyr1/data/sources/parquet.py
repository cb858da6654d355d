"""Parquet files read one row group at a time: the seed layout, or HF parquet with ``Image`` columns."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError
from ..rows import RowContext
from .base import RawRow, RowRef, RowSource, Unit, resolve_files

logger = logging.getLogger(__name__)

LARGE_ROW_GROUP_BYTES = 512 * 1024 * 1024
"""A row group is read whole; above this size a warning suggests rewriting the files with smaller groups."""


class ParquetSource(RowSource):
    """Units are row groups; a row group is read whole (pyarrow cannot read part of one), rows decoded lazily."""

    random_access = False

    def __init__(self, path: str, pattern: str = "*.parquet"):
        self.files = resolve_files(path, pattern)
        self.description = f"{path} ({len(self.files)} parquet file{'s' * (len(self.files) != 1)})"
        self.units = []
        for file in self.files:
            try:
                meta = pq.ParquetFile(file).metadata
            except (pa.ArrowException, OSError) as exc:
                raise DataError(f"{file}: not a readable parquet file ({exc})") from exc
            first = 0
            for rg in range(meta.num_row_groups):
                group = meta.row_group(rg)
                if group.total_byte_size > LARGE_ROW_GROUP_BYTES:
                    logger.warning(
                        "%s: row group %d holds %.0f MB; reading keeps a whole row group in memory, "
                        "so consider rewriting with smaller row groups",
                        file,
                        rg,
                        group.total_byte_size / 2**20,
                    )
                if group.num_rows:
                    self.units.append(Unit(file, rg, group.num_rows, first))
                first += group.num_rows

    def fetch(self, refs: Sequence[RowRef]) -> list[RawRow]:
        tables: dict[int, pa.Table] = {}
        out = []
        for unit_index, row in refs:
            unit = self.units[unit_index]
            table = tables.get(unit_index)
            if table is None:
                table = tables[unit_index] = _read_row_group(unit)
            ctx = RowContext(unit.file, unit.first_row + row, os.path.dirname(unit.file))
            out.append(RawRow(ctx, _row_loader(table, row)))
        return out


def _read_row_group(unit: Unit) -> pa.Table:
    try:
        # One reader per call and no pre-buffering: memory stays at one row group.
        return pq.ParquetFile(unit.file, pre_buffer=False).read_row_group(unit.key)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{unit.file}: cannot read row group {unit.key} ({exc})") from exc


def _row_loader(table: pa.Table, row: int):
    def load() -> Mapping[str, Any]:
        return {name: table.column(j)[row].as_py() for j, name in enumerate(table.column_names)}

    return load
