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

    def score(self, rows: Sequence[EditSample], outputs: Sequence[RolloutOutput]) -> ScoredBatch:
        """The four phases, in order: parse (format score, what to edit), edit, judge, combine."""
        by_id = {row.id: row for row in rows}
        if len(by_id) != len(rows):
            dupes = sorted({row.id for row in rows if sum(r.id == row.id for r in rows) > 1})
            raise ValueError(f"duplicate row ids in one batch: {dupes[:5]} (rows are matched to responses by id)")
        counts: Counter = Counter(total=len(outputs))
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        fmt, instructions, actions = self._parse(outputs, counts)
        parse_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        edit_results = self._edit(by_id, outputs, instructions, actions, counts)
        timings["edit"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        judge_results, reasons, final_images = self._judge(by_id, outputs, actions, edit_results, counts)
        timings["judge"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        rewards, valid, dims = self._combine(rows, outputs, actions, reasons, judge_results, fmt)
        timings["reward"] = time.perf_counter() - t0 + parse_s
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

    # -- the phases ----------------------------------------------------------------------------------------
    def _parse(
        self, outputs: Sequence[RolloutOutput], counts: Counter
    ) -> tuple[torch.Tensor, list[str | None], list[EditAction]]:
        """Format score of every response and what ``missing_re_edit`` makes of it (edit, skip, zero reward)."""
        r = self.reward_cfg
        fmt = torch.empty(len(outputs), dtype=torch.float64)
        instructions: list[str | None] = []
        actions: list[EditAction] = []
        for i, out in enumerate(outputs):
            fmt[i] = self.format_rule.score(out.text)
            decision = decide_edit(
                parse_response(out.text), r.missing_re_edit, fallback_instruction=r.fallback_instruction
            )
            counts["no_re_edit"] += decision.missing
            instructions.append(decision.instruction)
            actions.append(decision.action)
        return fmt, instructions, actions

    def _edit(
        self,
        by_id: dict[str, EditSample],
        outputs: Sequence[RolloutOutput],
        instructions: list[str | None],
        actions: list[EditAction],
        counts: Counter,
    ) -> dict[int, EditResult]:
        """Edit every response that has an instruction; results by response index."""
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
        counts["edits"] = len(requests)
        counts["edit_failed"] = sum(not res.ok for res in edit_results.values())
        return edit_results

    def _judge(
        self,
        by_id: dict[str, EditSample],
        outputs: Sequence[RolloutOutput],
        actions: list[EditAction],
        edit_results: dict[int, EditResult],
        counts: Counter,
    ) -> tuple[list[JudgeResult | None], list[str | None], list[Image.Image | None]]:
        """Judge each final image (the preliminary image for ``skip_edit``); failed edits are masked here."""
        n = len(outputs)
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
        counts["judged"] = len(judge_requests)
        counts["judge_failed"] = sum(1 for res in judge_results if res is not None and not res.valid)
        counts["judge_cached"] = sum(1 for res in judge_results if res is not None and res.cached)
        return judge_results, reasons, final_images

    def _combine(
        self,
        rows: Sequence[EditSample],
        outputs: Sequence[RolloutOutput],
        actions: list[EditAction],
        reasons: list[str | None],
        judge_results: list[JudgeResult | None],
        fmt: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Judge dimensions + format → reward per ``worker.reward``; every sample without one is masked with a
        reason (``reasons`` is completed in place)."""
        n = len(outputs)
        r = self.reward_cfg
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
        return rewards, valid, dims

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
