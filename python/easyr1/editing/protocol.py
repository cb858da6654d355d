"""The ``Editor`` protocol: what the driver asks of any image editor (Qwen-Image-Edit replicas, the sandbox)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

# The value types moved to the neutral easyr1.core.types; re-exported here for sandbox/, trainer/ and tests until
# phase B of issue 17 moves those importers (then these re-exports go).
from easyr1.core.types import EditRequest, EditResult

__all__ = ["EditRequest", "EditResult", "Editor"]


@runtime_checkable
class Editor(Protocol):
    def edit(self, requests: Sequence[EditRequest]) -> list[EditResult]:
        """Edit a batch; one result per request, in order."""
        ...
