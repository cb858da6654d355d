"""JSONL files: one JSON object per line, images as paths relative to the file."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from ..errors import INVALID_RECORD, DataError, FieldError
from ..rows import RowContext
from .base import RawRow, RowRef, RowSource, Unit, resolve_files

_READ_CHUNK = 1 << 20


class JsonlSource(RowSource):
    """Each file is one unit; an index of line offsets (built once) gives random access to any record."""

    random_access = True

    def __init__(self, path: str, pattern: str = "*.jsonl"):
        self.files = resolve_files(path, pattern)
        self.description = f"{path} ({len(self.files)} JSONL file{'s' * (len(self.files) != 1)})"
        self.units = []
        self._offsets: list[np.ndarray] = []
        self._line_numbers: list[np.ndarray] = []
        for file in self.files:
            offsets, line_numbers = _index_lines(file)
            self._offsets.append(offsets)
            self._line_numbers.append(line_numbers)
            if len(offsets) > 1:
                self.units.append(Unit(file, len(self._offsets) - 1, len(offsets) - 1, 0))

    def fetch(self, refs: Sequence[RowRef]) -> list[RawRow]:
        out: list[RawRow] = []
        handles: dict[int, object] = {}
        try:
            for unit_index, row in refs:
                unit = self.units[unit_index]
                fh = handles.get(unit.key)
                if fh is None:
                    fh = handles[unit.key] = open(unit.file, "rb")  # noqa: SIM115 - closed in finally
                start, end = self._offsets[unit.key][row], self._offsets[unit.key][row + 1]
                fh.seek(int(start))
                line = fh.read(int(end - start))
                ctx = RowContext(unit.file, int(self._line_numbers[unit.key][row]), os.path.dirname(unit.file), "line")
                out.append(_parse(line, ctx))
        finally:
            for fh in handles.values():
                fh.close()
        return out


def _parse(line: bytes, ctx: RowContext) -> RawRow:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return RawRow(ctx, dict, FieldError(INVALID_RECORD, "<record>", f"not JSON: {exc}"))
    if not isinstance(record, dict):
        return RawRow(
            ctx, dict, FieldError(INVALID_RECORD, "<record>", f"a JSON {type(record).__name__}, not an object")
        )
    return RawRow(ctx, lambda: record)


def _index_lines(file: str) -> tuple[np.ndarray, np.ndarray]:
    """Start offsets of the non-blank lines (plus the end of the last one) and their 1-based line numbers."""
    starts: list[int] = []
    ends: list[int] = []
    numbers: list[int] = []
    try:
        with open(file, "rb") as fh:
            position, line_number, pending = 0, 0, b""
            while True:
                chunk = fh.read(_READ_CHUNK)
                if not chunk:
                    break
                data = pending + chunk
                base = position - len(pending)
                cursor = 0
                while True:
                    newline = data.find(b"\n", cursor)
                    if newline < 0:
                        break
                    line_number += 1
                    if data[cursor:newline].strip():
                        starts.append(base + cursor)
                        ends.append(base + newline)
                        numbers.append(line_number)
                    cursor = newline + 1
                pending = data[cursor:]
                position += len(chunk)
            if pending.strip():
                line_number += 1
                starts.append(position - len(pending))
                ends.append(position)
                numbers.append(line_number)
    except OSError as exc:
        raise DataError(f"{file}: cannot read ({exc})") from exc
    # offsets[i]..offsets[i+1] must cover record i; ends are kept exact by storing starts plus a final end and
    # reading up to the next start (the JSON parser ignores the trailing newline and blank lines).
    offsets = np.array([*starts, ends[-1] if ends else 0], dtype=np.int64)
    return offsets, np.array(numbers, dtype=np.int64)
