"""Evaluate a policy folder on sandbox rows in this process: judge mean, format, repair rate (per defect kind).

The policy sees what the training loop's policy sees (the chat prompt of :func:`easyr1.data.build_policy_prompt`
with the instruction and the two images); its answer is scored by the sandbox's own reward path
(:func:`~easyr1.sandbox.answers.score_answer`: extract the ``<Re_edit>``, execute it, judge the final scene) and by
the reward's format rule. A row counts as **repaired** when no violation that belongs to any of its injected
defects is left in the final scene (:data:`DEFECT_VIOLATIONS`).

Used by ``benchmarks/learning.py`` (SFT-only arm, repair rates), ``easyr1 demo`` (repair rate before and after
GRPO) and the diagnosis in ``docs/sandbox.md`` (group reward spread of sampled answers).
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, pstdev
from typing import Any

from .answers import score_answer

logger = logging.getLogger(__name__)

DEFECT_VIOLATIONS: dict[str, tuple[str, ...]] = {
    "shadow_wrong_side": ("shadow_toward_sun",),
    "floating_object": ("floating_object",),
    "dry_ground_in_rain": ("dry_ground_in_rain",),
    "wet_ground_clear_sky": ("wet_ground_under_clear_sky",),
    "summer_foliage_in_snow": ("green_tree_in_snow",),
    "sun_at_night": ("sun_at_night",),
    "lit_candle_underwater": ("lit_candle_under_water",),
    "wrong_decoration": ("decoration_of_other_festival", "festival_decoration_missing"),
    "wrong_object_edited": (
        "requested_edit_missing",
        "requested_colour_wrong",
        "object_recoloured",
        "object_moved",
        "object_removed",
    ),
    "misplaced_object": ("object_misplaced",),
    "wrong_exposure": ("exposure_wrong",),
}
"""The judge's violation kinds that each injected defect leaves in the preliminary scene; the defect is repaired
when none of them is left."""


@dataclass
class RowResult:
    id: str
    defects: list[str]
    answer: str
    judge_mean: float
    format_score: float
    fixed: dict[str, bool]
    """Per injected defect kind: repaired in the final scene."""
    instruction: str = ""
    final_scene_json: str = ""

    @property
    def repaired(self) -> bool:
        return all(self.fixed.values())


@dataclass
class EvalResult:
    rows: list[RowResult] = field(default_factory=list)
    group_stds: list[float] = field(default_factory=list)
    """Standard deviation of the judge mean within each row's group of sampled answers (when n > 1)."""

    def summary(self) -> dict[str, Any]:
        if not self.rows:
            return {"rows": 0}
        per_kind: dict[str, list[bool]] = defaultdict(list)
        for r in self.rows:
            for kind, ok in r.fixed.items():
                per_kind[kind].append(ok)
        out: dict[str, Any] = {
            "rows": len(self.rows),
            "judge_mean": mean(r.judge_mean for r in self.rows),
            "format": mean(r.format_score for r in self.rows),
            "repair_rate": mean(1.0 if r.repaired else 0.0 for r in self.rows),
            "repair_rate_by_defect": {k: mean(1.0 if v else 0.0 for v in vs) for k, vs in sorted(per_kind.items())},
        }
        if self.group_stds:
            out["group_std_mean"] = mean(self.group_stds)
            out["groups_zero_spread"] = mean(1.0 if s < 1e-9 else 0.0 for s in self.group_stds)
        return out


def fixed_defects(defects: Sequence[str], final_violation_kinds: set[str]) -> dict[str, bool]:
    """Per defect kind: True when none of its violations (:data:`DEFECT_VIOLATIONS`) is left."""
    return {d: not (set(DEFECT_VIOLATIONS.get(d, (d,))) & final_violation_kinds) for d in defects}


def score_row(
    metadata: dict[str, Any], answer: str, format_score: float, row_id: str, instruction: str = ""
) -> RowResult:
    res = score_answer(metadata, answer)
    kinds = {v.kind for v in res.violations}
    defects = list(metadata.get("defects") or [])
    return RowResult(
        row_id,
        defects,
        answer,
        res.mean,
        format_score,
        fixed_defects(defects, kinds),
        instruction,
        res.final_scene_json,
    )


def load_rows(cfg: Any, split: str = "val", processor: Any = None) -> list[Any]:
    """All rows of a split as :class:`~easyr1.core.types.EditSample` (validation: never shuffled)."""
    from easyr1.data.dataset import build_dataset

    return list(build_dataset(cfg.data, split, processor=processor))


def blank_like(image: Any) -> Any:
    """A mid-grey image of the same size and mode (the blind control's view)."""
    from PIL import Image

    return Image.new(image.mode, image.size, (128,) * len(image.getbands()))


def evaluate_policy(
    model_path: str | Path,
    cfg: Any,
    rows: Sequence[Any],
    *,
    n: int = 1,
    temperature: float = 0.0,
    seed: int = 0,
    batch_size: int = 16,
    blank_images: bool = False,
) -> EvalResult:
    """Generate ``n`` answers per row with the policy in ``model_path`` and score them (see the module doc)."""
    import torch

    from easyr1.data import build_policy_prompt
    from easyr1.models.generation import generate_sequences
    from easyr1.models.inputs import encode_prompt
    from easyr1.models.loading import load_policy
    from easyr1.reward import format_score as reward_format_score

    loaded = load_policy(model_path, dtype="float32", attn_implementation="sdpa")
    tok = loaded.processor.tokenizer
    result = EvalResult()
    max_tokens = cfg.worker.rollout.response_length or cfg.data.max_response_length
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        prompts = []
        for row in chunk:
            prompt = build_policy_prompt(row, cfg.data.system_prompt, cfg.data.prompt_layout)
            if blank_images:
                prompt.images = [blank_like(im) for im in prompt.images]
            prompts.append(prompt)
        encoded = [encode_prompt(loaded.processor, p) for p in prompts for _ in range(n)]
        with torch.no_grad():
            outs = generate_sequences(
                loaded.model, tok, encoded, max_new_tokens=max_tokens, temperature=temperature, seed=seed + start
            )
        for i, row in enumerate(chunk):
            group = []
            for j in range(n):
                text = tok.decode(outs[i * n + j].token_ids, skip_special_tokens=True)
                fmt = reward_format_score(text, mode=cfg.worker.reward.format_mode)
                r = score_row(row.metadata, text, fmt, row.id, row.instruction)
                result.rows.append(r)
                group.append(r.judge_mean)
            if n > 1:
                result.group_stds.append(pstdev(group))
    return result


def repaired_by_second(first: EvalResult, second: EvalResult) -> list[tuple[RowResult, RowResult]]:
    """Rows (greedy, n = 1 evaluations of the same rows) that ``second`` repaired and ``first`` did not."""
    by_id = {r.id: r for r in first.rows}
    return [(by_id[r.id], r) for r in second.rows if r.repaired and r.id in by_id and not by_id[r.id].repaired]


def render_final(result: RowResult, path: Path, size: int = 128) -> Path:
    """Render a row's final scene (after its answer was executed) as a PNG."""
    from .render import render_scene
    from .scene import SceneDoc

    render_scene(SceneDoc.from_json(result.final_scene_json).scene, size).save(path)
    return path


def answer_histogram(result: EvalResult, top: int = 5) -> list[tuple[str, int]]:
    """The most frequent answers (a collapsed policy writes one answer for every row)."""
    return Counter(r.answer for r in result.rows).most_common(top)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m easyr1.sandbox.evaluate RUN_CONFIG MODEL [--n N] [--temperature T] [--blank]``: one JSON line."""
    import argparse

    from easyr1.config import load_config

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("config")
    parser.add_argument("model")
    parser.add_argument("--split", default="val")
    parser.add_argument("--n", type=int, default=1)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--blank", action="store_true")
    parser.add_argument("--show", type=int, default=0, help="print the N most frequent answers")
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    rows = load_rows(cfg, args.split)
    res = evaluate_policy(args.model, cfg, rows, n=args.n, temperature=args.temperature, blank_images=args.blank)
    print(json.dumps(res.summary()))
    for text, count in answer_histogram(res, args.show) if args.show else []:
        print(f"{count:4d}  {text!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
