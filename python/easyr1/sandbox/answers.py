"""Score a policy answer for a sandbox row directly: extract the re-edit, execute it, judge the result.

This is the sandbox's reward without images (the judge reads scene state, so nothing is rendered) — for reports
("reward of the demonstration" vs "reward of doing nothing"), tests and quick checks. The training loop goes
through the same editor and judge with images, via the protocols.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from statistics import mean
from typing import Any

from ..reward.parsing import extract_re_edit
from .editor import SCENE_KEY
from .grammar import parse_instruction
from .ops import apply_ops
from .rules import Violation, score_doc
from .scene import SceneDoc


@dataclass
class SandboxScore:
    scores: dict[str, float]
    """The five judge dimensions, 0..10."""
    re_edit: str | None
    """The executed re-edit text (``None``: nothing was executed — the preliminary edit was judged as is)."""
    unparsed: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    final_scene_json: str = ""

    @property
    def mean(self) -> float:
        """Unweighted mean of the five dimensions (the sandbox's headline reward)."""
        return mean(self.scores.values())


def _doc(row: str | Mapping[str, Any] | SceneDoc) -> SceneDoc:
    if isinstance(row, SceneDoc):
        return row
    if isinstance(row, Mapping):
        if row.get(SCENE_KEY) is None:
            raise ValueError(f"row has no {SCENE_KEY!r}")
        return SceneDoc.from_json(row[SCENE_KEY])
    return SceneDoc.from_json(row)


def score_re_edit(row: str | Mapping[str, Any] | SceneDoc, re_edit: str | None) -> SandboxScore:
    """Execute ``re_edit`` on the row's preliminary scene and judge the result; ``None`` judges it unchanged.

    ``row`` is a ``scene_json`` string, a metadata/record mapping holding one, or a :class:`SceneDoc`.
    """
    doc = _doc(row)
    if re_edit is None:
        final_doc = doc
        unparsed: list[str] = []
        ignored: list[str] = []
    else:
        ops, unparsed = parse_instruction(re_edit)
        final, report = apply_ops(doc.scene, ops, doc.source)
        final_doc = doc.with_scene(final, stage="final", applied=report.applied)
        ignored = report.ignored
    scores, violations = score_doc(final_doc)
    return SandboxScore(scores, re_edit, unparsed, ignored, violations, final_doc.to_json())


def score_answer(
    row: str | Mapping[str, Any] | SceneDoc,
    answer: str,
    *,
    extract: Callable[[str], str | None] = extract_re_edit,
) -> SandboxScore:
    """Parse a policy answer, execute its re-edit, judge: the sandbox reward of ``answer`` for ``row``.

    ``extract`` defaults to the reward rules' :func:`easyr1.reward.extract_re_edit` (the loop's own reading).

    An answer without a re-edit is judged as doing nothing (``re_edit is None`` in the result); whether that is
    what training does is the reward configuration's choice (``worker.reward.missing_re_edit``).
    """
    return score_re_edit(row, extract(answer))


def score_preliminary(row: str | Mapping[str, Any] | SceneDoc) -> SandboxScore:
    """The judge's scores of the preliminary edit itself (the "do nothing" answer)."""
    return score_re_edit(row, None)


@dataclass
class RewardSummary:
    rows: int
    do_nothing_mean: float
    """Mean over rows of the mean judge score of the preliminary edit."""
    demonstration_mean: float
    """Mean over rows of the mean judge score after executing the demonstration."""
    per_dimension_do_nothing: dict[str, float]
    per_dimension_demonstration: dict[str, float]


def summarize_rewards(records: Iterable[Mapping[str, Any]]) -> RewardSummary:
    """Do-nothing vs demonstration reward over records holding ``scene_json`` and ``demonstration``."""
    before: list[dict[str, float]] = []
    after: list[dict[str, float]] = []
    for rec in records:
        before.append(score_preliminary(rec).scores)
        after.append(score_answer(rec, rec["demonstration"]).scores)
    if not before:
        raise ValueError("no records to summarize")
    dims = list(before[0])
    return RewardSummary(
        rows=len(before),
        do_nothing_mean=mean(mean(s.values()) for s in before),
        demonstration_mean=mean(mean(s.values()) for s in after),
        per_dimension_do_nothing={d: mean(s[d] for s in before) for d in dims},
        per_dimension_demonstration={d: mean(s[d] for s in after) for d in dims},
    )
