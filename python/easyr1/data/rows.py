"""Turning one raw row (a mapping of column → value) into an :class:`EditSample`.

Two row layouts exist: the *seed* layout (the reference parquet columns, base64 images) and the *field* layout
(JSONL records and Hugging Face rows: configurable field names, images as paths, bytes or ``Image`` features).
Decoders raise :class:`~easyr1.data.errors.FieldError`; the dataset adds file and row.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from easyr1.core.types import EditSample

from .errors import EMPTY_INSTRUCTION, MISSING_COLUMN, MISSING_VALUE, WRONG_TYPE, FieldError
from .images import ImageOptions, decode_base64_image, decode_image_value

SEED_ID = "omni_edit_id"
SEED_TASK = "task"
SEED_SOURCE = "src_img_b64"
SEED_INSTRUCTION = "edit_prompt"
SEED_EDITED = "qwen_edited_img_b64"
SEED_COLUMNS = (SEED_ID, SEED_TASK, SEED_SOURCE, SEED_INSTRUCTION, SEED_EDITED)
"""Columns every seed-format file must have; ``width``, ``height`` and any other column go to metadata."""


@dataclass(frozen=True)
class RowContext:
    """Where a raw row lives: used for ``EditSample.origin`` and to resolve relative image paths."""

    file: str
    row: int
    base_dir: str
    row_label: str = "row"

    @property
    def origin(self) -> str:
        return f"{self.file}:{self.row}"


class RowDecoder(Protocol):
    def decode(self, raw: Mapping[str, Any], ctx: RowContext) -> EditSample: ...


def _required(raw: Mapping[str, Any], key: str) -> Any:
    if key not in raw:
        raise FieldError(MISSING_COLUMN, key, "column not present")
    value = raw[key]
    if value is None:
        raise FieldError(MISSING_VALUE, key, "value is null")
    return value


def _text(value: Any, column: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise FieldError(WRONG_TYPE, column, f"expected text, got {type(value).__name__}")
    return str(value)


def parse_instruction(value: Any, column: str, variant: str) -> tuple[str, str | None, str | None]:
    """``(instruction, short, detailed)`` from a ``[short, detailed]`` list, its Python-literal string, or text.

    A plain string is the only instruction there is: it is used whatever ``variant`` says, and ``short`` and
    ``detailed`` stay ``None``. An empty chosen instruction is an error, never replaced by the other variant.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise FieldError(WRONG_TYPE, column, "looks like a list literal but does not parse") from None
            if not isinstance(value, list):
                raise FieldError(WRONG_TYPE, column, f"literal is a {type(value).__name__}, not a list")
        else:
            if not text:
                raise FieldError(EMPTY_INSTRUCTION, column, "empty string")
            return text, None, None
    if hasattr(value, "tolist") and not isinstance(value, list):  # numpy arrays from pandas-written files
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise FieldError(WRONG_TYPE, column, f"expected a [short, detailed] list or text, got {type(value).__name__}")
    items = list(value)
    for item in items:
        if not isinstance(item, str):
            raise FieldError(WRONG_TYPE, column, f"list holds a {type(item).__name__}, expected text")
    if len(items) == 0:
        raise FieldError(EMPTY_INSTRUCTION, column, "empty list")
    if len(items) == 1:
        text = items[0].strip()
        if not text:
            raise FieldError(EMPTY_INSTRUCTION, column, "empty string")
        return text, None, None
    if len(items) > 2:
        raise FieldError(WRONG_TYPE, column, f"list of {len(items)} items, expected [short, detailed]")
    short, detailed = items[0].strip(), items[1].strip()
    chosen = short if variant == "short" else detailed
    if not chosen:
        raise FieldError(EMPTY_INSTRUCTION, column, f"the {variant} instruction is empty")
    return chosen, short or None, detailed or None


class SeedRowDecoder:
    """The reference parquet layout: ``omni_edit_id, task, src_img_b64, edit_prompt, qwen_edited_img_b64``."""

    def __init__(self, images: ImageOptions, instruction_variant: str = "detailed"):
        self.images = images
        self.variant = instruction_variant

    def decode(self, raw: Mapping[str, Any], ctx: RowContext) -> EditSample:
        sample_id = _text(_required(raw, SEED_ID), SEED_ID)
        task = _text(_required(raw, SEED_TASK), SEED_TASK)
        instruction, short, detailed = parse_instruction(
            _required(raw, SEED_INSTRUCTION), SEED_INSTRUCTION, self.variant
        )
        source = decode_base64_image(_required(raw, SEED_SOURCE), SEED_SOURCE, self.images)
        edited = decode_base64_image(_required(raw, SEED_EDITED), SEED_EDITED, self.images)
        metadata = {k: v for k, v in raw.items() if k not in SEED_COLUMNS}
        return _sample(sample_id, task, (instruction, short, detailed), source, edited, metadata, ctx)


def _sample(sample_id, task, instructions, source, edited, metadata, ctx: RowContext) -> EditSample:
    """The row from its decoded parts (``instructions`` = (used, short, detailed))."""
    instruction, short, detailed = instructions
    return EditSample(
        id=sample_id,
        task=task,
        instruction=instruction,
        source_image=source.image,
        edited_image=edited.image,
        instruction_short=short,
        instruction_detailed=detailed,
        metadata=metadata,
        origin=ctx.origin,
        source_original_size=source.original_size,
        edited_original_size=edited.original_size,
    )


class FieldRowDecoder:
    """JSONL records and Hugging Face rows with configurable field names.

    ``task_key`` is optional in the data (an absent task is the empty string); the other fields are required.
    """

    def __init__(
        self,
        images: ImageOptions,
        *,
        id_key: str,
        instruction_key: str,
        source_image_key: str,
        edited_image_key: str,
        task_key: str = "task",
        instruction_variant: str = "detailed",
    ):
        self.images = images
        self.id_key = id_key
        self.instruction_key = instruction_key
        self.source_key = source_image_key
        self.edited_key = edited_image_key
        self.task_key = task_key
        self.variant = instruction_variant
        self.consumed = {id_key, instruction_key, source_image_key, edited_image_key, task_key}

    def decode(self, raw: Mapping[str, Any], ctx: RowContext) -> EditSample:
        sample_id = _text(_required(raw, self.id_key), self.id_key)
        task_value = raw.get(self.task_key)
        task = "" if task_value is None else _text(task_value, self.task_key)
        instruction, short, detailed = parse_instruction(
            _required(raw, self.instruction_key), self.instruction_key, self.variant
        )
        source = decode_image_value(_required(raw, self.source_key), self.source_key, self.images, ctx.base_dir)
        edited = decode_image_value(_required(raw, self.edited_key), self.edited_key, self.images, ctx.base_dir)
        metadata = {k: v for k, v in raw.items() if k not in self.consumed}
        return _sample(sample_id, task, (instruction, short, detailed), source, edited, metadata, ctx)
