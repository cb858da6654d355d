"""Errors and counters for rows that cannot be turned into an :class:`~easyr1.core.types.EditSample`.

A bad row is never replaced by a placeholder. With ``data.on_bad_row=error`` the first one stops reading with a
:class:`BadRowError` that names the file, the row and the column; with ``skip`` it is skipped and counted by
reason in :class:`DataStats`.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

# Reasons a row is bad (the keys of DataStats.bad_rows and of the ``data/bad_rows/<reason>`` metrics).
MISSING_COLUMN = "missing_column"
MISSING_VALUE = "missing_value"
WRONG_TYPE = "wrong_type"
UNDECODABLE_BASE64 = "undecodable_base64"
NOT_AN_IMAGE = "not_an_image"
ZERO_SIZE_IMAGE = "zero_size_image"
EXTREME_ASPECT_RATIO = "extreme_aspect_ratio"
MISSING_FILE = "missing_file"
EMPTY_INSTRUCTION = "empty_instruction"
INVALID_RECORD = "invalid_record"

BAD_ROW_REASONS = (
    MISSING_COLUMN,
    MISSING_VALUE,
    WRONG_TYPE,
    UNDECODABLE_BASE64,
    NOT_AN_IMAGE,
    ZERO_SIZE_IMAGE,
    EXTREME_ASPECT_RATIO,
    MISSING_FILE,
    EMPTY_INSTRUCTION,
    INVALID_RECORD,
)

LOGGED_BAD_ROWS = 5
"""How many skipped rows are logged one by one (per dataset and epoch); the rest are only counted."""


class DataError(ValueError):
    """A dataset that cannot be read at all (no files, unreadable file, unknown layout)."""


class FieldError(ValueError):
    """Raised by field decoders: one value is bad. The row reader adds file and row to make a BadRowError."""

    def __init__(self, reason: str, column: str, detail: str):
        super().__init__(f"{column}: {reason} ({detail})")
        self.reason = reason
        self.column = column
        self.detail = detail


class BadRowError(ValueError):
    """One row that cannot be used, with where it is and why."""

    def __init__(self, file: str, row: int, column: str, reason: str, detail: str, row_label: str = "row"):
        self.file = file
        self.row = row
        self.column = column
        self.reason = reason
        self.detail = detail
        self.row_label = row_label
        super().__init__(f"{file} {row_label} {row} column {column!r}: {reason} ({detail})")

    @classmethod
    def from_field(cls, err: FieldError, file: str, row: int, row_label: str = "row") -> BadRowError:
        return cls(file, row, err.column, err.reason, err.detail, row_label)


@dataclass
class DataStats:
    """What reading one epoch (or one pass) found: rows read, bad rows by reason, prompts dropped as too long."""

    rows_read: int = 0
    """Rows turned into samples (before the prompt-length filter)."""
    bad_rows: Counter[str] = field(default_factory=Counter)
    overlong_prompts: int = 0
    first_bad_row: str | None = None
    """The message of the first bad row seen (for reports)."""

    def record_bad_row(self, err: BadRowError, dataset_name: str) -> None:
        self.bad_rows[err.reason] += 1
        if self.first_bad_row is None:
            self.first_bad_row = str(err)
        total = sum(self.bad_rows.values())
        if total <= LOGGED_BAD_ROWS:
            logger.warning("%s: skipping bad row: %s", dataset_name, err)
        elif total == LOGGED_BAD_ROWS + 1:
            logger.warning("%s: more bad rows are skipped; only their counts are reported from now on", dataset_name)

    @property
    def bad_rows_total(self) -> int:
        return sum(self.bad_rows.values())

    def metrics(self, prefix: str = "data") -> dict[str, float]:
        """Flat numbers for the metrics logger: ``{prefix}/rows_read``, ``{prefix}/bad_rows/<reason>``, ..."""
        out: dict[str, float] = {
            f"{prefix}/rows_read": float(self.rows_read),
            f"{prefix}/bad_rows_total": float(self.bad_rows_total),
            f"{prefix}/overlong_prompts": float(self.overlong_prompts),
        }
        for reason in BAD_ROW_REASONS:
            out[f"{prefix}/bad_rows/{reason}"] = float(self.bad_rows.get(reason, 0))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "rows_read": self.rows_read,
            "bad_rows": dict(self.bad_rows),
            "overlong_prompts": self.overlong_prompts,
            "first_bad_row": self.first_bad_row,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> DataStats:
        return cls(
            rows_read=int(state.get("rows_read", 0)),
            bad_rows=Counter({str(k): int(v) for k, v in state.get("bad_rows", {}).items()}),
            overlong_prompts=int(state.get("overlong_prompts", 0)),
            first_bad_row=state.get("first_bad_row"),
        )
