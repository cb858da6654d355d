"""The sandbox's procedural judge behind the :class:`~easyr1.reward.judge.protocol.Judge` protocol.

It scores the five dimensions from the scene's true state (``metadata["scene_json"]``: the editor's final scene
when the driver merged the editor's ``info``, or the row's preliminary scene when called with the row metadata
alone) against the requested edit recorded in the same document — see :mod:`easyr1.sandbox.rules` for every rule
and its cost. It never looks at pixels, makes no calls and is deterministic. A request without a readable scene
is an invalid result (``client_error``), never a default score.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..reward.judge.protocol import JudgeRequest, JudgeResult
from .editor import SCENE_KEY
from .rules import Violation, score_doc
from .scene import SceneDoc

log = logging.getLogger(__name__)


class SandboxJudge:
    """Deterministic five-dimension scores (0–10) of sandbox scenes."""

    @classmethod
    def from_config(cls, judge_cfg: Any = None) -> Any:
        """The judge ``build_judge`` makes; wrapped in the shuffled-reward control when ``$EASYR1_SANDBOX_SHUFFLE_JUDGE``
        holds a seed (``easyr1.sandbox.controls``; only ``benchmarks/learning.py`` sets it)."""
        from .controls import SHUFFLE_ENV, ShufflingJudge, shuffle_seed_from_env

        seed = shuffle_seed_from_env()
        if seed is None:
            return cls()
        log.warning("%s=%d: judge scores are SHUFFLED within each training batch (a control run)", SHUFFLE_ENV, seed)
        return ShufflingJudge(cls(), seed)

    def score_batch(self, requests: Sequence[JudgeRequest]) -> list[JudgeResult]:
        return [self._score_one(r) for r in requests]

    def _score_one(self, request: JudgeRequest) -> JudgeResult:
        start = time.perf_counter()
        try:
            doc = scene_doc_from_metadata(request.metadata)
        except ValueError as exc:
            log.warning("sandbox judge %s: %s", request.key, exc)
            return JudgeResult.failure("client_error", latency_s=time.perf_counter() - start)
        scores, _ = score_doc(doc)
        return JudgeResult(scores=scores, valid=True, latency_s=time.perf_counter() - start, calls=0)

    def explain(self, request: JudgeRequest) -> list[Violation]:
        """The violations behind a request's scores (for reports and debugging)."""
        return score_doc(scene_doc_from_metadata(request.metadata))[1]


def scene_doc_from_metadata(metadata: Mapping[str, Any] | None) -> SceneDoc:
    """The scene document in request metadata; ``ValueError`` saying what is missing or malformed."""
    if not metadata or metadata.get(SCENE_KEY) is None:
        raise ValueError(f"metadata has no {SCENE_KEY!r} (not a sandbox row?)")
    return SceneDoc.from_json(metadata[SCENE_KEY])
