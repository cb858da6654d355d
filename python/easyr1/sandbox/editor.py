"""The sandbox's procedural editor behind the :class:`~easyr1.editing.protocol.Editor` protocol.

It reads the scene document from ``request.metadata["scene_json"]``, parses the re-edit text with the sandbox
grammar, applies what it understood to the current scene, renders the result at the size of the request's image
and returns the new scene document in ``EditResult.info["scene_json"]`` (the driver merges ``info`` into the judge
request's metadata, so the judge sees the final state). Clauses outside the grammar are listed in
``info["unparsed"]``; understood operations that did not apply (``remove the sun`` with no sun) in
``info["ignored"]``. A request without a readable scene is a failure with a reason — never a made-up image.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from ..core.types import EditRequest, EditResult
from .grammar import parse_instruction
from .ops import apply_ops
from .render import render_scene
from .scene import SceneDoc

log = logging.getLogger(__name__)

SCENE_KEY = "scene_json"
"""Metadata key holding the scene document (a data column of sandbox rows; the editor's ``info`` key too)."""


class SandboxEditor:
    """Executes re-edit instructions on sandbox scenes. Deterministic; the request's seed is not needed."""

    def __init__(self, image_size: int | None = None):
        self.image_size = image_size
        """Output side in pixels; ``None`` renders at the size of each request's image."""

    def edit(self, requests: Sequence[EditRequest]) -> list[EditResult]:
        return [self._edit_one(r) for r in requests]

    def _edit_one(self, request: EditRequest) -> EditResult:
        start = time.perf_counter()
        raw = request.metadata.get(SCENE_KEY) if request.metadata else None
        if raw is None:
            log.warning("sandbox edit %s: request has no %r metadata", request.key, SCENE_KEY)
            return EditResult.failure("missing_scene", key=request.key, detail=f"metadata has no {SCENE_KEY!r}")
        try:
            doc = SceneDoc.from_json(raw)
        except ValueError as exc:
            log.warning("sandbox edit %s: unreadable scene: %s", request.key, exc)
            return EditResult.failure("bad_scene", key=request.key, detail=str(exc))
        ops, unparsed = parse_instruction(request.instruction or "")
        final, report = apply_ops(doc.scene, ops, doc.source)
        size = (self.image_size, self.image_size) if self.image_size else _size_of(request)
        image = render_scene(final, size)
        new_doc = doc.with_scene(final, stage="final", applied=report.applied)
        return EditResult(
            image=image,
            ok=True,
            info={
                SCENE_KEY: new_doc.to_json(),
                "unparsed": unparsed,
                "ignored": report.ignored,
                "applied": report.applied,
            },
            latency_s=time.perf_counter() - start,
        )


def _size_of(request: EditRequest) -> tuple[int, int]:
    if request.image is not None:
        return request.image.size
    return (64, 64)
