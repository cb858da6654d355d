"""Training and validation rows: readers, streaming order, policy prompts.

Public API (what the driver calls)::

    from easyr1.data import build_dataloader, build_policy_prompt

    loader = build_dataloader(cfg.data, "train", processor=policy_processor)  # EditDataLoader
    for batch in loader:                      # one epoch of list[EditSample], rollout_batch_size each
        prompts = [build_policy_prompt(s, cfg.data.system_prompt, cfg.data.prompt_layout) for s in batch]
        ...
        checkpoint["data"] = loader.state_dict()                # resume: loader.load_state_dict(...)
    metrics.update(loader.metrics())          # data/epoch, data/rows_read, data/bad_rows/<reason>, ...

* ``build_dataset(data_cfg, split="train"|"val", processor=None) -> EditDataset``: rows of one split as
  :class:`EditSample` (``iter_epoch(epoch, start)`` yields ``(next_position, sample)``).
* ``EditDataLoader(dataset, batch_size, drop_last=True)``: batches, ``epoch``, ``state_dict()`` /
  ``load_state_dict()``, ``metrics()``, ``stats`` (:class:`DataStats`).
* ``build_policy_prompt(sample, system_prompt=None, layout="chat") -> PolicyPrompt`` (layout: ``data.prompt_layout``);
  ``SYSTEM_PROMPT``;
  ``PromptLengthFilter(processor, max_length, system_prompt, layout)`` / ``prompt_token_count(processor, prompt)``.
* Bad rows: :class:`BadRowError` (file, row, column, reason) or, with ``on_bad_row=skip``, counts by reason.

Formats (``data.format``): ``seed`` (reference parquet, base64 images), ``jsonl`` (image paths), ``hf``
(``save_to_disk`` folders or parquet with ``Image`` features). See ``docs/data.md``.
"""

from easyr1.core.types import EditSample

from .dataset import EditDataset, build_dataset, build_decoder, build_source
from .errors import BAD_ROW_REASONS, BadRowError, DataError, DataStats
from .images import ImageOptions
from .loader import EditDataLoader, build_dataloader
from .prompts import (
    INSTRUCTION_CLOSE,
    INSTRUCTION_OPEN,
    SYSTEM_PROMPT,
    PromptLengthFilter,
    build_messages,
    build_policy_prompt,
    prompt_token_count,
)

__all__ = [
    "BAD_ROW_REASONS",
    "INSTRUCTION_CLOSE",
    "INSTRUCTION_OPEN",
    "SYSTEM_PROMPT",
    "BadRowError",
    "DataError",
    "DataStats",
    "EditDataLoader",
    "EditDataset",
    "EditSample",
    "ImageOptions",
    "PromptLengthFilter",
    "build_dataloader",
    "build_dataset",
    "build_decoder",
    "build_messages",
    "build_policy_prompt",
    "build_source",
    "prompt_token_count",
]
