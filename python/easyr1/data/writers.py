"""Writing rows in the seed layout (used by tests, the benchmark and anyone producing seed-format data)."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from .rows import SEED_EDITED, SEED_ID, SEED_INSTRUCTION, SEED_SOURCE, SEED_TASK


def encode_image_base64(image: Image.Image, fmt: str = "PNG", **save_args: Any) -> str:
    """Base64 text of ``image`` saved as ``fmt``."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_args)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def seed_row(
    row_id: str,
    task: str,
    source_image: Image.Image | str,
    edited_image: Image.Image | str,
    instruction_short: str,
    instruction_detailed: str,
    *,
    image_format: str = "PNG",
    **extra: Any,
) -> dict[str, Any]:
    """One seed-format row; images may be given as ``PIL`` images or as base64 text already."""

    def b64(image: Image.Image | str) -> str:
        return image if isinstance(image, str) else encode_image_base64(image, image_format)

    width, height = source_image.size if isinstance(source_image, Image.Image) else (None, None)
    row = {
        SEED_ID: row_id,
        SEED_TASK: task,
        "width": width,
        "height": height,
        SEED_SOURCE: b64(source_image),
        SEED_INSTRUCTION: [instruction_short, instruction_detailed],
        SEED_EDITED: b64(edited_image),
    }
    row.update(extra)
    return row


def write_seed_parquet(
    rows: Iterable[Mapping[str, Any]], path: str | os.PathLike, *, row_group_size: int | None = None
) -> str:
    """Write rows (dicts of column → value) to one parquet file; images stay base64 text."""
    rows = list(rows)
    table = pa.Table.from_pylist(rows)
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    # Images are distinct per row: a dictionary page would only hold every image twice.
    pq.write_table(
        table,
        path,
        row_group_size=row_group_size or max(1, len(rows)),
        use_dictionary=[c for c in table.column_names if c not in (SEED_SOURCE, SEED_EDITED)],
    )
    return os.fspath(path)
