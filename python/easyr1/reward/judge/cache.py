"""On-disk cache of judge answers keyed by a content hash (used only for deterministic settings)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import diskcache

logger = logging.getLogger(__name__)


def content_key(parts: dict[str, Any]) -> str:
    """sha256 of a canonical JSON rendering of everything that determines an answer."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class JudgeCache:
    """A :mod:`diskcache` store of parsed, valid answers. Failures are never stored.

    Safe to share between threads and processes (sqlite underneath); a damaged or unreadable entry is a miss.
    """

    def __init__(self, directory: str | Path, *, size_limit_bytes: int = 2**30):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._cache = diskcache.Cache(str(self.directory), size_limit=size_limit_bytes)

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            value = self._cache.get(key, default=None)
        except Exception as exc:  # a corrupt entry must not stop scoring
            logger.warning("judge cache read failed (%s); treating as a miss", type(exc).__name__)
            return None
        return value if isinstance(value, dict) else None

    def set(self, key: str, value: dict[str, Any]) -> None:
        try:
            self._cache.set(key, value)
        except Exception as exc:
            logger.warning("judge cache write failed (%s); the answer is used but not stored", type(exc).__name__)

    def __len__(self) -> int:
        return len(self._cache)

    def close(self) -> None:
        self._cache.close()
