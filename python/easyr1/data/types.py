"""The row type every reader yields: :class:`~easyr1.core.types.EditSample` (defined in the neutral
``easyr1.core.types``; re-exported here until phase B of issue 17 moves ``trainer/grpo.py`` and
``trainer/scoring.py`` to it)."""

from __future__ import annotations

from easyr1.core.types import EditSample

__all__ = ["EditSample"]
