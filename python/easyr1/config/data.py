"""``data``: where training/validation rows come from and how prompts are built."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .base import ConfigError, check_choice, check_non_negative, check_positive, check_range


@dataclass
class DataConfig:
    format: str = "seed"
    """Row format: ``seed`` (the reference parquet with base64 images), ``jsonl`` (image paths) or ``hf``
    (a Hugging Face dataset saved to disk, or parquet with ``Image`` features)."""
    train_files: str = "data/train"
    """Training data: a file, or a directory read with ``pattern``."""
    val_files: str | None = None
    """Validation data (same format); ``None`` disables validation."""
    pattern: str | None = None
    """Glob used when ``train_files``/``val_files`` is a directory (alias: ``data.parquet_pattern``); ``None``
    means ``*.parquet`` for ``seed``/``hf`` and ``*.jsonl`` for ``jsonl``; ``**`` recurses into sub-folders."""
    instruction_key: str = "instruction"
    """JSONL: field holding the edit instruction."""
    source_image_key: str = "source_image"
    """JSONL/HF: field holding the source image (a path relative to the JSONL file, or an ``Image`` feature)."""
    edited_image_key: str = "edited_image"
    """JSONL/HF: field holding the preliminary edited image."""
    id_key: str = "id"
    """JSONL/HF: field holding the row id."""
    task_key: str = "task"
    """JSONL/HF: field holding the task type (optional in the data: absent means an empty task)."""
    train_split: str = "train"
    """HF: split read for training when ``train_files`` is a saved ``DatasetDict``."""
    val_split: str = "validation"
    """HF: split read for validation when ``val_files`` is a saved ``DatasetDict``."""
    instruction_variant: str = "detailed"
    """Which of the seed ``edit_prompt`` pair goes into the prompt: ``short`` or ``detailed``."""
    max_prompt_length: int = 30000
    """Prompts with more tokens (images included) are dropped when ``filter_overlong_prompts`` is on."""
    max_response_length: int = 4096
    """Maximum number of generated tokens per response."""
    rollout_batch_size: int = 16
    """Prompts per training step (each is sampled ``worker.rollout.n`` times)."""
    val_batch_size: int = 64
    """Prompts per validation batch; ``-1`` means the whole validation set at once."""
    shuffle: bool = True
    """Shuffle training rows (deterministically by ``seed`` and epoch)."""
    seed: int = 1
    """Seed of the shuffling order (with the epoch number it fixes the order, so resuming is exact)."""
    shuffle_buffer_rows: int = 256
    """Rows shuffled together: JSONL/HF rows come from anywhere in the data; parquet row groups are taken in a
    shuffled order until this many rows are gathered, then those rows are shuffled. Memory holds these rows
    still encoded (at least one whole row group)."""
    min_pixels: int = 3136
    """Images are resized (aspect preserved) to at least this many pixels (28*28*4 by default)."""
    max_pixels: int = 1003520
    """... and at most this many pixels (28*28*1280 by default)."""
    max_long_side: int | None = None
    """Before the pixel-count fit, shrink images whose width or height exceeds this many pixels so the long side
    is this long (aspect preserved, Lanczos, never enlarged): the reference read its images this way with 1024
    (``compat: reference`` sets it). ``None`` applies no long-side limit."""
    filter_overlong_prompts: bool = True
    """Drop (and count) prompts longer than ``max_prompt_length`` instead of failing."""
    on_bad_row: str = "error"
    """A row that cannot be decoded: ``error`` stops with the file, row and column; ``skip`` skips and counts."""
    system_prompt: str | None = None
    """Override of the built-in system prompt (the re-edit contract); ``None`` uses ours."""
    prompt_layout: str = "chat"
    """How the policy prompt is laid out: ``chat`` (a system turn with the contract, then a user turn with the
    instruction and the two images) or ``reference`` (the reference's layout: one user turn whose text is
    ``System: <contract>\n\nUser: <instruction>…``, images after it; ``compat: reference`` sets it). Rollout,
    SFT and the prompt-length filter all use it."""
    read_batch_rows: int = 64
    """Rows being decoded ahead of the consumer at any time (bounds the memory of decoded images)."""
    decode_threads: int = -1
    """Threads decoding images (image decoding releases the GIL): ``-1`` one per usable CPU core (at most 8),
    ``0`` decodes in the calling thread."""
    extra: dict[str, str] = field(default_factory=dict)
    """Free-form reader options (e.g. HF ``split``)."""

    def validate(self, path: str) -> Iterator[ConfigError]:
        yield from check_choice(f"{path}.format", self.format, ["seed", "jsonl", "hf"])
        yield from check_choice(f"{path}.instruction_variant", self.instruction_variant, ["short", "detailed"])
        yield from check_choice(f"{path}.on_bad_row", self.on_bad_row, ["error", "skip"])
        yield from check_choice(f"{path}.prompt_layout", self.prompt_layout, ["chat", "reference"])
        yield from check_positive(f"{path}.max_prompt_length", self.max_prompt_length)
        yield from check_positive(f"{path}.max_response_length", self.max_response_length)
        yield from check_positive(f"{path}.rollout_batch_size", self.rollout_batch_size)
        if self.val_batch_size != -1:
            yield from check_positive(f"{path}.val_batch_size", self.val_batch_size)
        yield from check_positive(f"{path}.min_pixels", self.min_pixels)
        yield from check_range(f"{path}.max_pixels", self.max_pixels, low=self.min_pixels)
        if self.max_long_side is not None:
            yield from check_positive(f"{path}.max_long_side", self.max_long_side)
        yield from check_positive(f"{path}.read_batch_rows", self.read_batch_rows)
        yield from check_positive(f"{path}.shuffle_buffer_rows", self.shuffle_buffer_rows)
        yield from check_range(f"{path}.decode_threads", self.decode_threads, low=-1)
        yield from check_non_negative(f"{path}.seed", self.seed)
