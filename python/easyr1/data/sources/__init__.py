"""Where raw rows come from: parquet files (seed layout or HF ``Image`` columns), JSONL files, HF datasets on disk."""

from .base import RawRow, RowRef, RowSource, Unit, resolve_files
from .hf import HFDiskSource, is_hf_saved_dataset
from .jsonl import JsonlSource
from .parquet import ParquetSource

__all__ = [
    "HFDiskSource",
    "JsonlSource",
    "ParquetSource",
    "RawRow",
    "RowRef",
    "RowSource",
    "Unit",
    "is_hf_saved_dataset",
    "resolve_files",
]
