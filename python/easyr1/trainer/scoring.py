"""From responses to rewards: parse, format score, edit, judge, combine — with every failure masked and counted.

Nothing here invents a value. A sample whose edit or judge call failed, or whose reward could not be combined,
is *masked* (``valid=False``) with a reason; the advantage step gives it zero weight. ``missing_re_edit`` decides
what a response without a ``<Re_edit>`` gets, and that choice is counted too.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image

from easyr1.config import DIMENSIONS, EasyR1Config
from easyr1.core.seeds import edit_seed
from easyr1.core.types import EditRequest, EditResult, EditSample, RolloutOutput
from easyr1.editing.protocol import Editor
from easyr1.reward import EditAction, FormatRule, combine_with_config, decide_edit, parse_response
from easyr1.reward.judge.protocol import Judge, JudgeRequest, JudgeResult

logger = logging.getLogger(__name__)


class AccountingError(AssertionError):
    """A logged row whose sample counts do not add up (a bug in the driver, never a data problem)."""


def reward_means(
    rewards: torch.Tensor, counted: torch.Tensor, dims: dict[str, torch.Tensor], fmt: torch.Tensor, prefix: str = ""
) -> dict[str, float]:
    """The reward means of a row: ``reward/mean`` over the samples counted in ``samples/valid`` (``counted``),
    ``reward/<dimension>`` over those of them the judge scored, ``reward/format`` over every sample.

    A mean without samples is absent: NaN (``null`` in metrics.jsonl, no Prometheus sample), with its count next to
    it (``reward/count``, ``reward/judged_count``) — never 0.0, which would read as a measurement.
    """
    metrics: dict[str, float] = {}
    chosen = rewards[counted]
    metrics[f"{prefix}reward/mean"] = float(chosen.mean()) if chosen.numel() else math.nan
    metrics[f"{prefix}reward/count"] = int(chosen.numel())
    judged = counted.clone()
    for d in DIMENSIONS:
        judged &= torch.isfinite(dims[d])
    for d in DIMENSIONS:
        values = dims[d][judged]
        metrics[f"{prefix}reward/{d}"] = float(values.mean()) if values.numel() else math.nan
    metrics[f"{prefix}reward/judged_count"] = int(judged.sum())
    metrics[f"{prefix}reward/format"] = float(fmt.double().mean()) if fmt.numel() else math.nan
    return metrics


def check_accounting(row: dict, prefix: str = "") -> None:
    """The one rule of every logged step row (training, validation, the row logged before a stop):
    ``samples/valid + Σ samples/masked/<reason> = samples/total`` with no negative count, ``data/digest`` present,
    and ``reward/mean`` absent (NaN) exactly when ``samples/valid`` is 0, with ``reward/count = samples/valid``."""
    p = prefix
    missing = [
        k for k in (f"{p}samples/total", f"{p}samples/valid", f"{p}data/digest", f"{p}reward/mean") if k not in row
    ]
    if missing:
        raise AccountingError(f"row lacks {missing}")
    masked = {k: v for k, v in row.items() if k.startswith(f"{p}samples/masked/")}
    if any(v < 0 for v in masked.values()) or row[f"{p}samples/valid"] < 0:
        raise AccountingError(f"negative sample count in {masked}")
    total, valid = row[f"{p}samples/total"], row[f"{p}samples/valid"]
    if valid + sum(masked.values()) != total:
        raise AccountingError(f"sample accounting broken: valid {valid} + masked {masked} != total {total}")
    if row.get(f"{p}reward/count") != valid:
        raise AccountingError(f"reward/count {row.get(f'{p}reward/count')} != samples/valid {valid}")
    if (valid == 0) != math.isnan(row[f"{p}reward/mean"]):
        raise AccountingError(f"reward/mean {row[f'{p}reward/mean']} with {valid} valid samples")


@dataclass
class ScoredBatch:
    """Per-response results of one scoring pass, aligned with the rollout outputs."""

    rewards: torch.Tensor
    """(N,) float64 combined reward 0–10; NaN where masked."""
    valid: torch.Tensor
    """(N,) bool: the sample takes part in the advantage/loss."""
    format_scores: torch.Tensor
    """(N,) format score 0–5 (always defined)."""
    dimension_scores: dict[str, torch.Tensor]
    """dimension → (N,) judge score, NaN where not judged or failed."""
    reasons: list[str | None]
    """Mask reason per sample (``edit:<why>``, ``judge:<why>``, ``reward:invalid``), ``None`` when valid."""
    re_edits: list[str | None]
    texts: list[str]
    """The responses, as generated."""
    final_images: list[Image.Image | None]
    actions: list[str] = field(default_factory=list)
    """Per sample: ``edit``, ``skip_edit`` or ``zero_reward`` (what ``missing_re_edit`` decided)."""
    edit_latencies: list[float] = field(default_factory=list)
    """Seconds per edit that was made (successful or not), for the latency histogram."""
    counts: Counter = field(default_factory=Counter)
    """``no_re_edit``, ``edits``, ``edit_failed``, ``judged``, ``judge_failed``, ``judge_cached`` …"""
    timings: dict[str, float] = field(default_factory=dict)
    judge_results: list[JudgeResult | None] = field(default_factory=list)

    def masked_by_reason(self) -> Counter:
        return Counter(r for r in self.reasons if r is not None)

    def all_attempts_failed(self) -> bool:
        """Every sample that was meant to be edited/judged was masked by a failure (none was scored)."""
        attempted = [r for r, a in zip(self.reasons, self.actions, strict=True) if a != "zero_reward"]
        return bool(attempted) and all(r is not None for r in attempted)


class RewardPipeline:
    """Turns ``RolloutOutput``s of a batch of rows into rewards using an :class:`Editor` and a :class:`Judge`."""

    def __init__(self, cfg: EasyR1Config, editor: Editor, judge: Judge):
        self.cfg = cfg
        self.reward_cfg = cfg.worker.reward
        self.edit_cfg = cfg.worker.image_edit
        self.editor = editor
        self.judge = judge
        self.format_rule = FormatRule.from_config(self.reward_cfg)
        self._preliminary_cache: dict[str, JudgeResult] = {}

    # -- helpers -------------------------------------------------------------------------------------------
    # -- the pass ------------------------------------------------------------------------------------------
    def score(self, rows: Sequence[EditSample], outputs: Sequence[RolloutOutput]) -> ScoredBatch:
        by_id = {row.id: row for row in rows}
        if len(by_id) != len(rows):
            dupes = sorted({row.id for row in rows if sum(r.id == row.id for r in rows) > 1})
            raise ValueError(f"duplicate row ids in one batch: {dupes[:5]} (rows are matched to responses by id)")
        n = len(outputs)
        counts: Counter = Counter(total=n)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        instructions: list[str | None] = []
        actions: list[EditAction] = []
        fmt = torch.empty(n, dtype=torch.float64)
        r = self.reward_cfg
        for i, out in enumerate(outputs):
            fmt[i] = self.format_rule.score(out.text)
            decision = decide_edit(
                parse_response(out.text), r.missing_re_edit, fallback_instruction=r.fallback_instruction
            )
            counts["no_re_edit"] += decision.missing
            instructions.append(decision.instruction)
            actions.append(decision.action)
        timings["parse"] = time.perf_counter() - t0

        # Edit every response that has an instruction.
        t0 = time.perf_counter()
        edit_index = [i for i, a in enumerate(actions) if a is EditAction.EDIT]
        requests = []
        for i in edit_index:
            row = by_id[outputs[i].prompt_id]
            requests.append(
                EditRequest(
                    image=row.edited_image,
                    instruction=instructions[i] or "",
                    seed=edit_seed(self.edit_cfg, row.id, outputs[i].sample_index),
                    key=f"{row.id}/{outputs[i].sample_index}",
                    metadata=row.metadata,
                )
            )
        edit_results: dict[int, EditResult] = {}
        if requests:
            results = self.editor.edit(requests)
            if len(results) != len(requests):
                raise RuntimeError(f"editor returned {len(results)} results for {len(requests)} requests")
            edit_results = dict(zip(edit_index, results, strict=True))
        timings["edit"] = time.perf_counter() - t0
        counts["edits"] = len(requests)
        counts["edit_failed"] = sum(not res.ok for res in edit_results.values())

        # Judge final images (or the preliminary image for skip_edit).
        t0 = time.perf_counter()
        judge_index: list[int] = []
        judge_requests: list[JudgeRequest] = []
        reasons: list[str | None] = [None] * n
        final_images: list[Image.Image | None] = [None] * n
        for i, out in enumerate(outputs):
            row = by_id[out.prompt_id]
            if actions[i] is EditAction.ZERO_REWARD:
                continue
            if actions[i] is EditAction.SKIP_EDIT:
                image, metadata = row.edited_image, {**row.metadata, "task": row.task}
            else:
                res = edit_results[i]
                if not res.ok or res.image is None:
                    reasons[i] = f"edit:{res.reason or 'failed'}"
                    continue
                image, metadata = res.image, {**row.metadata, "task": row.task, **res.info}
            final_images[i] = image
            judge_index.append(i)
            judge_requests.append(
                JudgeRequest(
                    source_image=row.source_image,
                    edited_image=image,
                    instruction=row.instruction,
                    preliminary_image=row.edited_image if self.cfg.judge.judge_preliminary else None,
                    key=f"{row.id}/{out.sample_index}",
                    metadata=metadata,
                )
            )
        judge_results: list[JudgeResult | None] = [None] * n
        if judge_requests:
            results = self.judge.score_batch(judge_requests)
            if len(results) != len(judge_requests):
                raise RuntimeError(f"judge returned {len(results)} results for {len(judge_requests)} requests")
            for i, res in zip(judge_index, results, strict=True):
                judge_results[i] = res
                if not res.valid:
                    reasons[i] = f"judge:{res.reason or 'failed'}"
        timings["judge"] = time.perf_counter() - t0
        counts["judged"] = len(judge_requests)
        counts["judge_failed"] = sum(1 for res in judge_results if res is not None and not res.valid)
        counts["judge_cached"] = sum(1 for res in judge_results if res is not None and res.cached)

        # Combine.
        t0 = time.perf_counter()
        dims = {d: torch.full((n,), math.nan, dtype=torch.float64) for d in DIMENSIONS}
        for i, res in enumerate(judge_results):
            if res is not None and res.valid and res.scores:
                for d in DIMENSIONS:
                    if d in res.scores:
                        dims[d][i] = float(res.scores[d])
        preliminary, preliminary_failures = self._preliminary_scores(rows, outputs) if r.improvement else (None, {})
        rewards, valid = combine_with_config(dims, fmt, r, preliminary_scores=preliminary)
        rewards = rewards.to(torch.float64).clone()
        valid = valid.clone().bool()
        for i in range(n):
            if actions[i] is EditAction.ZERO_REWARD:
                rewards[i], valid[i] = 0.0, True
            elif reasons[i] is None and outputs[i].prompt_id in preliminary_failures:
                reasons[i] = f"judge_preliminary:{preliminary_failures[outputs[i].prompt_id]}"
            elif reasons[i] is None and not bool(valid[i]):
                reasons[i] = "reward:invalid"
            if reasons[i] is not None:
                valid[i] = False
                rewards[i] = math.nan
        timings["reward"] = time.perf_counter() - t0 + timings.pop("parse")
        return ScoredBatch(
            rewards=rewards,
            valid=valid,
            format_scores=fmt,
            dimension_scores=dims,
            reasons=reasons,
            re_edits=instructions,
            texts=[out.text for out in outputs],
            actions=[a.value for a in actions],
            edit_latencies=[res.latency_s for res in edit_results.values()],
            final_images=final_images,
            counts=counts,
            timings=timings,
            judge_results=judge_results,
        )

    def _preliminary_scores(
        self, rows: Sequence[EditSample], outputs: Sequence[RolloutOutput]
    ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """Judge scores of each row's preliminary image (judged once per row and cached), repeated per response,
        and the failure reason per row id whose preliminary judgement failed this time (those rows' responses are
        masked; failures are not cached, so the next step tries again)."""
        todo = [row for row in rows if row.id not in self._preliminary_cache]
        failures: dict[str, str] = {}
        if todo:
            requests = [
                JudgeRequest(
                    row.source_image,
                    row.edited_image,
                    row.instruction,
                    key=f"{row.id}/preliminary",
                    metadata={**row.metadata, "task": row.task},
                )
                for row in todo
            ]
            for row, res in zip(todo, self.judge.score_batch(requests), strict=True):
                if res.valid:
                    self._preliminary_cache[row.id] = res
                else:
                    failures[row.id] = res.reason or "failed"
        n = len(outputs)
        base = {d: torch.full((n,), math.nan, dtype=torch.float64) for d in DIMENSIONS}
        for i, out in enumerate(outputs):
            res = self._preliminary_cache.get(out.prompt_id)
            if res is not None and res.scores:
                for d in DIMENSIONS:
                    base[d][i] = float(res.scores.get(d, math.nan))
        return base, failures
