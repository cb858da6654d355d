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
from collections.abc import Callable, Iterable, Sequence
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

Span = tuple[str, float, float, int]
"""``(stage, start, end, items)`` with ``time.perf_counter()`` times."""


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
    """Seconds per stage: ``edit`` and ``judge`` (staged: each stage's wall; streaming: first submit to last
    answer of that stage, so they overlap each other and the rollout), ``reward`` (parse + combine)."""
    judge_results: list[JudgeResult | None] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    """``(stage, start, end, items)`` per editor call (``edit``) and judge call (``judge``, the preliminary images'
    included), times from ``time.perf_counter()``: when each pool was busy, for busy fractions and the critical
    path. Staged: one span per ``edit``/``score_batch`` call; streaming: one per replica call or ``edit`` call of
    an in-process editor, and one per judge call."""
    outputs: list[RolloutOutput] = field(default_factory=list)
    """The rollout outputs scored, in order (streaming: restored to prompt order, then ``sample_index``)."""

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
        by_id = self.rows_by_id(rows)
        counts: Counter = Counter(total=len(outputs))
        timings: dict[str, float] = {}
        spans: list[Span] = []
        t0 = time.perf_counter()
        fmt, instructions, actions = self._parse(outputs, counts)
        parse_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        edit_results = self._edit(by_id, outputs, instructions, actions, counts, spans)
        timings["edit"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        judge_results, reasons, final_images = self._judge(by_id, outputs, actions, edit_results, counts, spans)
        timings["judge"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        preliminary = self._judge_preliminary(rows, spans) if self.reward_cfg.improvement else None
        rewards, valid, dims = self._combine(rows, outputs, actions, reasons, judge_results, fmt, preliminary)
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
            spans=spans,
            outputs=list(outputs),
        )

    def score_stream(
        self,
        rows: Sequence[EditSample],
        chunks: Iterable[Sequence[RolloutOutput]],
        on_span: Callable[[str, float, float, int], None] | None = None,
    ) -> ScoredBatch:
        """:meth:`score` of the concatenated ``chunks`` (e.g. ``Rollout.generate_stream``), with each chunk parsed,
        sent to the editor and each edited image sent to the judge as soon as it arrives; the same result as
        :meth:`score` of the outputs in prompt order (see :mod:`easyr1.trainer.streaming`). ``on_span`` gets each
        edit and judge call's span as it ends."""
        from .streaming import score_stream

        return score_stream(self, rows, chunks, on_span)

    @staticmethod
    def rows_by_id(rows: Sequence[EditSample]) -> dict[str, EditSample]:
        by_id = {row.id: row for row in rows}
        if len(by_id) != len(rows):
            dupes = sorted({row.id for row in rows if sum(r.id == row.id for r in rows) > 1})
            raise ValueError(f"duplicate row ids in one batch: {dupes[:5]} (rows are matched to responses by id)")
        return by_id

    # -- one sample (shared with the streaming path) ------------------------------------------------------------
    def parse_one(self, text: str) -> tuple[float, str | None, EditAction, bool]:
        """Format score, re-edit instruction, what ``missing_re_edit`` makes of it, and whether it was missing."""
        r = self.reward_cfg
        decision = decide_edit(parse_response(text), r.missing_re_edit, fallback_instruction=r.fallback_instruction)
        return self.format_rule.score(text), decision.instruction, decision.action, bool(decision.missing)

    def edit_request(self, row: EditSample, out: RolloutOutput, instruction: str | None) -> EditRequest:
        return EditRequest(
            image=row.edited_image,
            instruction=instruction or "",
            seed=edit_seed(self.edit_cfg, row.id, out.sample_index),
            key=f"{row.id}/{out.sample_index}",
            metadata=row.metadata,
        )

    def judge_request(
        self, row: EditSample, out: RolloutOutput, action: EditAction, res: EditResult | None
    ) -> tuple[JudgeRequest | None, str | None]:
        """The judge request of a sample's final image (the preliminary image for ``skip_edit``), or the mask
        reason of a failed edit."""
        if action is EditAction.SKIP_EDIT:
            image, metadata = row.edited_image, {**row.metadata, "task": row.task}
        else:
            assert res is not None
            if not res.ok or res.image is None:
                return None, f"edit:{res.reason or 'failed'}"
            image, metadata = res.image, {**row.metadata, "task": row.task, **res.info}
        request = JudgeRequest(
            source_image=row.source_image,
            edited_image=image,
            instruction=row.instruction,
            preliminary_image=row.edited_image if self.cfg.judge.judge_preliminary else None,
            key=f"{row.id}/{out.sample_index}",
            metadata=metadata,
        )
        return request, None

    # -- the phases ----------------------------------------------------------------------------------------
    def _parse(
        self, outputs: Sequence[RolloutOutput], counts: Counter
    ) -> tuple[torch.Tensor, list[str | None], list[EditAction]]:
        """Format score of every response and what ``missing_re_edit`` makes of it (edit, skip, zero reward)."""
        fmt = torch.empty(len(outputs), dtype=torch.float64)
        instructions: list[str | None] = []
        actions: list[EditAction] = []
        for i, out in enumerate(outputs):
            fmt[i], instruction, action, missing = self.parse_one(out.text)
            counts["no_re_edit"] += missing
            instructions.append(instruction)
            actions.append(action)
        return fmt, instructions, actions

    def _edit(
        self,
        by_id: dict[str, EditSample],
        outputs: Sequence[RolloutOutput],
        instructions: list[str | None],
        actions: list[EditAction],
        counts: Counter,
        spans: list[Span],
    ) -> dict[int, EditResult]:
        """Edit every response that has an instruction; results by response index."""
        edit_index = [i for i, a in enumerate(actions) if a is EditAction.EDIT]
        requests = [self.edit_request(by_id[outputs[i].prompt_id], outputs[i], instructions[i]) for i in edit_index]
        edit_results: dict[int, EditResult] = {}
        if requests:
            start = time.perf_counter()
            results = self.editor.edit(requests)
            spans.append(("edit", start, time.perf_counter(), len(requests)))
            if len(results) != len(requests):
                raise RuntimeError(f"editor returned {len(results)} results for {len(requests)} requests")
            edit_results = dict(zip(edit_index, results, strict=True))
        count_edits(counts, list(edit_results.values()))
        return edit_results

    def _judge(
        self,
        by_id: dict[str, EditSample],
        outputs: Sequence[RolloutOutput],
        actions: list[EditAction],
        edit_results: dict[int, EditResult],
        counts: Counter,
        spans: list[Span],
    ) -> tuple[list[JudgeResult | None], list[str | None], list[Image.Image | None]]:
        """Judge each final image (the preliminary image for ``skip_edit``); failed edits are masked here."""
        n = len(outputs)
        judge_index: list[int] = []
        judge_requests: list[JudgeRequest] = []
        reasons: list[str | None] = [None] * n
        final_images: list[Image.Image | None] = [None] * n
        for i, out in enumerate(outputs):
            if actions[i] is EditAction.ZERO_REWARD:
                continue
            request, reasons[i] = self.judge_request(by_id[out.prompt_id], out, actions[i], edit_results.get(i))
            if request is None:
                continue
            final_images[i] = request.edited_image
            judge_index.append(i)
            judge_requests.append(request)
        judge_results: list[JudgeResult | None] = [None] * n
        if judge_requests:
            start = time.perf_counter()
            results = self.judge.score_batch(judge_requests)
            spans.append(("judge", start, time.perf_counter(), len(judge_requests)))
            if len(results) != len(judge_requests):
                raise RuntimeError(f"judge returned {len(results)} results for {len(judge_requests)} requests")
            for i, res in zip(judge_index, results, strict=True):
                judge_results[i] = res
                if not res.valid:
                    reasons[i] = f"judge:{res.reason or 'failed'}"
        count_judged(counts, judge_results)
        return judge_results, reasons, final_images

    def _combine(
        self,
        rows: Sequence[EditSample],
        outputs: Sequence[RolloutOutput],
        actions: list[EditAction],
        reasons: list[str | None],
        judge_results: list[JudgeResult | None],
        fmt: torch.Tensor,
        preliminary_failures: dict[str, str] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Judge dimensions + format → reward per ``worker.reward``; every sample without one is masked with a
        reason (``reasons`` is completed in place). ``preliminary_failures``: what :meth:`_judge_preliminary`
        returned this pass (with ``worker.reward.improvement``)."""
        n = len(outputs)
        r = self.reward_cfg
        dims = {d: torch.full((n,), math.nan, dtype=torch.float64) for d in DIMENSIONS}
        for i, res in enumerate(judge_results):
            if res is not None and res.valid and res.scores:
                for d in DIMENSIONS:
                    if d in res.scores:
                        dims[d][i] = float(res.scores[d])
        preliminary = self._preliminary_base(outputs) if r.improvement else None
        preliminary_failures = preliminary_failures or {}
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

    def preliminary_requests(self, rows: Sequence[EditSample]) -> tuple[list[EditSample], list[JudgeRequest]]:
        """The rows whose preliminary image has no cached judgement yet, and their judge requests."""
        todo = [row for row in rows if row.id not in self._preliminary_cache]
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
        return todo, requests

    def apply_preliminary(self, todo: Sequence[EditSample], results: Sequence[JudgeResult]) -> dict[str, str]:
        """Cache the valid judgements of ``todo``'s preliminary images; the failure reason per row id of the others
        (not cached, so the next step tries again)."""
        failures: dict[str, str] = {}
        for row, res in zip(todo, results, strict=True):
            if res.valid:
                self._preliminary_cache[row.id] = res
            else:
                failures[row.id] = res.reason or "failed"
        return failures

    def _judge_preliminary(self, rows: Sequence[EditSample], spans: list[Span]) -> dict[str, str]:
        """Judge each row's preliminary image once (cached); the rows whose judgement failed this time."""
        todo, requests = self.preliminary_requests(rows)
        if not requests:
            return {}
        start = time.perf_counter()
        results = self.judge.score_batch(requests)
        spans.append(("judge", start, time.perf_counter(), len(requests)))
        return self.apply_preliminary(todo, results)

    def _preliminary_base(self, outputs: Sequence[RolloutOutput]) -> dict[str, torch.Tensor]:
        """The cached preliminary scores, repeated per response (NaN where a row has none)."""
        n = len(outputs)
        base = {d: torch.full((n,), math.nan, dtype=torch.float64) for d in DIMENSIONS}
        for i, out in enumerate(outputs):
            res = self._preliminary_cache.get(out.prompt_id)
            if res is not None and res.scores:
                for d in DIMENSIONS:
                    base[d][i] = float(res.scores.get(d, math.nan))
        return base


def count_edits(counts: Counter, results: Sequence[EditResult]) -> None:
    """``edits`` and ``edit_failed`` of one pass."""
    counts["edits"] = len(results)
    counts["edit_failed"] = sum(not res.ok for res in results)


def count_judged(counts: Counter, judge_results: Sequence[JudgeResult | None]) -> None:
    """``judged``, ``judge_failed`` and ``judge_cached`` of one pass (the samples' judge calls)."""
    done = [res for res in judge_results if res is not None]
    counts["judged"] = len(done)
    counts["judge_failed"] = sum(1 for res in done if not res.valid)
    counts["judge_cached"] = sum(1 for res in done if res.cached)
