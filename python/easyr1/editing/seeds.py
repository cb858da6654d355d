"""Editor seeds and request identity: moved to :mod:`easyr1.core.seeds` (re-exported here until phase B of issue 17
moves the remaining importers, ``trainer/grpo.py`` and ``trainer/scoring.py``)."""

from __future__ import annotations

from easyr1.core.seeds import SEED_BITS, derive_seed, edit_seed, image_digest, request_identity

__all__ = ["SEED_BITS", "derive_seed", "edit_seed", "image_digest", "request_identity"]
