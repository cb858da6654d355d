"""``EditDataset``: a row source plus a row decoder, streamed in a deterministic, resumable order.

Positions count rows of the epoch's order (bad and filtered rows included), so ``(epoch, position)`` is all a
resume needs: the order is recomputed and reading starts at ``position``.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from easyr1.core.types import EditSample

from .errors import BadRowError, DataError, DataStats, FieldError
from .images import ImageOptions
from .order import epoch_blocks
from .prompts import PromptLengthFilter
from .rows import SEED_EDITED, SEED_SOURCE, FieldRowDecoder, RowDecoder, SeedRowDecoder
from .sources import HFDiskSource, JsonlSource, ParquetSource, RawRow, RowSource, is_hf_saved_dataset

logger = logging.getLogger(__name__)

LOGGED_OVERLONG = 3
MAX_AUTO_DECODE_THREADS = 8


def resolve_decode_threads(requested: int) -> int:
    """``-1`` → one thread per CPU core this process may use (at most 8); otherwise ``requested`` (0 = inline)."""
    if requested >= 0:
        return requested
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_AUTO_DECODE_THREADS, cores))


@dataclass
class _Overlong:
    sample: EditSample
    length: int


class EditDataset:
    """Rows of one split as :class:`EditSample`, read with bounded memory.

    ``iter_epoch(epoch, start)`` yields ``(next_position, sample)``: ``next_position`` is where reading resumes
    after this sample. Memory holds one block (``shuffle_buffer_rows`` rows, or the row groups covering them,
    still encoded) plus ``read_batch_rows`` rows being decoded by ``decode_threads`` threads.
    """

    def __init__(
        self,
        source: RowSource,
        decoder: RowDecoder,
        *,
        name: str = "train",
        shuffle: bool = False,
        seed: int = 0,
        on_bad_row: str = "error",
        shuffle_buffer_rows: int = 256,
        read_batch_rows: int = 64,
        decode_threads: int = -1,
        prompt_filter: PromptLengthFilter | None = None,
    ):
        if on_bad_row not in ("error", "skip"):
            raise ValueError(f"on_bad_row must be 'error' or 'skip', not {on_bad_row!r}")
        self.source = source
        self.decoder = decoder
        self.name = name
        self.shuffle = shuffle
        self.seed = seed
        self.on_bad_row = on_bad_row
        self.shuffle_buffer_rows = max(1, shuffle_buffer_rows)
        self.read_batch_rows = max(1, read_batch_rows)
        self.decode_threads = resolve_decode_threads(decode_threads)
        self.prompt_filter = prompt_filter
        self.stats = DataStats()
        """Counters of the latest pass started with ``iter_epoch`` (unless the caller passed its own)."""

    @property
    def num_rows(self) -> int:
        """Rows stored, bad ones included (an upper bound on the samples an epoch yields)."""
        return self.source.num_rows

    def __len__(self) -> int:
        return self.num_rows

    def __iter__(self) -> Iterator[EditSample]:
        for _, sample in self.iter_epoch(0):
            yield sample

    def order_key(self) -> dict[str, Any]:
        """Everything the reading order depends on; a resumed loader checks it is unchanged."""
        return {
            "fingerprint": self.source.fingerprint(),
            "shuffle": self.shuffle,
            "seed": self.seed,
            "shuffle_buffer_rows": self.shuffle_buffer_rows,
        }

    def iter_epoch(
        self, epoch: int = 0, start: int = 0, stats: DataStats | None = None
    ) -> Iterator[tuple[int, EditSample]]:
        """Samples of ``epoch`` from ``start`` on. Bad rows raise or are counted (``on_bad_row``) into ``stats``."""
        if stats is None:
            if start == 0:
                self.stats = DataStats()
            stats = self.stats
        pool = (
            ThreadPoolExecutor(self.decode_threads, thread_name_prefix="easyr1-decode") if self.decode_threads else None
        )
        window = self.read_batch_rows if pool else 1  # decoding inline gains nothing from reading ahead
        try:
            for position, raws in self._blocks(epoch, start):
                pending: deque[Future | Any] = deque()
                submitted = 0
                while submitted < len(raws) or pending:
                    while submitted < len(raws) and len(pending) < window:
                        raw, raws[submitted] = raws[submitted], None  # the decoder holds the only reference now
                        pending.append(pool.submit(self._decode, raw) if pool else self._decode(raw))
                        submitted += 1
                        del raw
                    work = pending.popleft()
                    result = work.result() if pool else work
                    position += 1
                    if isinstance(result, BadRowError):
                        if self.on_bad_row == "error":
                            raise result
                        stats.record_bad_row(result, self.name)
                        continue
                    stats.rows_read += 1
                    if isinstance(result, _Overlong):
                        stats.overlong_prompts += 1
                        if stats.overlong_prompts <= LOGGED_OVERLONG:
                            logger.info(
                                "%s: dropping %s: prompt of %d tokens exceeds data.max_prompt_length=%d",
                                self.name,
                                result.sample.origin,
                                result.length,
                                self.prompt_filter.max_length if self.prompt_filter else -1,
                            )
                        continue
                    yield position, result
                # The block is done before the next one is fetched, so at most one block is held in memory.
                raws.clear()
                self.source.release_memory()
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def _blocks(self, epoch: int, start: int) -> Iterator[tuple[int, list[RawRow | None]]]:
        """``(position of the first row, raw rows)`` for each block of the epoch from ``start`` on."""
        blocks = epoch_blocks(
            [u.num_rows for u in self.source.units],
            random_access=self.source.random_access,
            shuffle=self.shuffle,
            seed=self.seed,
            epoch=epoch,
            buffer_rows=self.shuffle_buffer_rows,
        )
        position = 0
        for block in blocks:
            if position + len(block) <= start:
                position += len(block)
                continue
            offset = max(0, start - position)
            refs = [(int(u), int(r)) for u, r in block[offset:]]
            raws: list[RawRow | None] = list(self.source.fetch(refs))
            yield position + offset, raws
            position += len(block)
            del raws

    def _decode(self, raw: RawRow) -> EditSample | BadRowError | _Overlong:
        ctx = raw.ctx
        try:
            if raw.error is not None:
                raise raw.error
            sample = self.decoder.decode(raw.load(), ctx)
        except FieldError as err:
            return BadRowError.from_field(err, ctx.file, ctx.row, ctx.row_label)
        if self.prompt_filter is not None:
            length = self.prompt_filter.length(sample)
            if length > self.prompt_filter.max_length:
                return _Overlong(sample, length)
        return sample


def build_source(fmt: str, path: str, pattern: str | None, hf_split: str) -> RowSource:
    """The row source for ``data.format`` (``seed``, ``jsonl`` or ``hf``) at ``path``."""
    if fmt == "seed":
        return ParquetSource(path, pattern or "*.parquet", buffer_columns=(SEED_SOURCE, SEED_EDITED))
    if fmt == "jsonl":
        return JsonlSource(path, pattern or "*.jsonl")
    if fmt == "hf":
        if is_hf_saved_dataset(path):
            return HFDiskSource(path, hf_split)
        return ParquetSource(path, pattern or "*.parquet")
    raise DataError(f"unknown data format {fmt!r} (seed, jsonl or hf)")


def build_decoder(data_cfg: Any) -> RowDecoder:
    images = ImageOptions(
        min_pixels=data_cfg.min_pixels, max_pixels=data_cfg.max_pixels, max_long_side=data_cfg.max_long_side
    )
    if data_cfg.format == "seed":
        return SeedRowDecoder(images, data_cfg.instruction_variant)
    return FieldRowDecoder(
        images,
        id_key=data_cfg.id_key,
        instruction_key=data_cfg.instruction_key,
        source_image_key=data_cfg.source_image_key,
        edited_image_key=data_cfg.edited_image_key,
        task_key=data_cfg.task_key,
        instruction_variant=data_cfg.instruction_variant,
    )


def build_dataset(data_cfg: Any, split: str = "train", processor: Any = None) -> EditDataset:
    """The dataset of ``split`` (``train`` or ``val``) described by a :class:`~easyr1.config.DataConfig`.

    With a ``processor`` (the policy's) and ``data.filter_overlong_prompts``, prompts longer than
    ``data.max_prompt_length`` tokens are dropped and counted. Validation is never shuffled.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    path = data_cfg.train_files if split == "train" else data_cfg.val_files
    if not path:
        raise DataError(f"data.{split}_files is not set")
    hf_split = data_cfg.train_split if split == "train" else data_cfg.val_split
    source = build_source(data_cfg.format, path, data_cfg.pattern, hf_split)
    prompt_filter = None
    if data_cfg.filter_overlong_prompts:
        if processor is None:
            logger.info("%s: no processor given, prompt lengths are not checked", split)
        else:
            prompt_filter = PromptLengthFilter(
                processor, data_cfg.max_prompt_length, data_cfg.system_prompt, data_cfg.prompt_layout
            )
    dataset = EditDataset(
        source,
        build_decoder(data_cfg),
        name=split,
        shuffle=data_cfg.shuffle and split == "train",
        seed=data_cfg.seed,
        on_bad_row=data_cfg.on_bad_row,
        shuffle_buffer_rows=data_cfg.shuffle_buffer_rows,
        read_batch_rows=data_cfg.read_batch_rows,
        decode_threads=data_cfg.decode_threads,
        prompt_filter=prompt_filter,
    )
    logger.info("%s data: %s, %d rows", split, source.description, dataset.num_rows)
    return dataset
