"""The ``Editor`` protocol: what the driver asks of any image editor (Qwen-Image-Edit replicas, the sandbox)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from PIL import Image


@dataclass
class EditRequest:
    """One re-edit: apply ``instruction`` to ``image`` (the preliminary edited image)."""

    image: Image.Image
    instruction: str
    seed: int
    key: str
    """Stable identifier for logs and de-duplication, e.g. ``"<sample id>/<response index>"``."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """Row metadata (the sandbox editor reads the scene state from it)."""


@dataclass
class EditResult:
    """The outcome of one :class:`EditRequest`: an image, or a failure with a reason — never a substitute."""

    image: Image.Image | None
    ok: bool
    reason: str | None = None
    """Failure reason when not ok: ``exception``, ``nan_output``, ``blank_output``, ``replica_died``,
    ``timeout``, ``unparsable_instruction`` …"""
    info: dict[str, Any] = field(default_factory=dict)
    """Backend details passed on to the judge request's metadata (the sandbox: final scene state, phrases not
    understood)."""
    latency_s: float = 0.0

    @classmethod
    def failure(cls, reason: str, **info: Any) -> EditResult:
        return cls(image=None, ok=False, reason=reason, info=dict(info))


@runtime_checkable
class Editor(Protocol):
    def edit(self, requests: Sequence[EditRequest]) -> list[EditResult]:
        """Edit a batch; one result per request, in order."""
        ...
