"""Streaming scoring gives exactly the staged result (sandbox editor and judge, in process and on a 2-replica pool),
and a failure in any stage while another is in flight is raised once, without a hang or a leaked thread."""

from __future__ import annotations

import math
import threading
import time

import pytest
from PIL import Image

from easyr1.config import DIMENSIONS, load_config
from easyr1.core.types import EditResult, EditSample, RolloutOutput
from easyr1.reward.judge.protocol import JudgeResult
from easyr1.sandbox import SandboxEditor, SandboxJudge, generate_row, render_scene
from easyr1.trainer.scoring import RewardPipeline, ScoredBatch

GARBAGE = "<CoT>Something is off.</CoT>\n<Re_edit>paint the moon purple</Re_edit>"
NO_TAGS = "I would leave it as it is."


def sandbox_rows(n: int, size: int = 32) -> list[EditSample]:
    rows = []
    for i in range(n):
        row = generate_row(5, i)
        rows.append(
            EditSample(
                id=row.id,
                task=row.task,
                instruction=row.instruction_short,
                source_image=render_scene(row.doc.source, size),
                edited_image=render_scene(row.doc.scene, size),
                metadata={"scene_json": row.doc.to_json()},
            )
        )
    return rows


def sandbox_outputs(rows: list[EditSample]) -> list[RolloutOutput]:
    """Four answers per row: the repair, a partial one, garbage and no tags; row 0 repeats its repair (a duplicate
    edit under per-group seeds)."""
    outputs = []
    for k, row in enumerate(rows):
        generated = generate_row(5, k)
        texts = [generated.demonstration, generated.partial_demonstration, GARBAGE, NO_TAGS]
        if k == 0:
            texts[2] = generated.demonstration
        outputs += [RolloutOutput(row.id, j, text, [1, 2, 3]) for j, text in enumerate(texts)]
    return outputs


def shards(outputs: list[RolloutOutput], order: list[list[int]], n: int = 4):
    """The outputs of the rows in ``order`` (one list per shard), shards out of prompt order, as a generator."""
    for rows in order:
        yield [out for r in rows for out in outputs[r * n : (r + 1) * n]]


CONFIGS = {
    "improvement_skip_edit": [
        "worker.reward.improvement=true",
        "worker.image_edit.seed_mode=per_group",
        "worker.reward.missing_re_edit=skip_edit",
        "worker.reward.strategy=max_deviation",
    ],
    "zero_reward": ["worker.reward.missing_re_edit=zero_reward", "worker.reward.strategy=weighted_sum"],
}


def assert_same(staged: ScoredBatch, streamed: ScoredBatch) -> None:
    def same_floats(a, b) -> bool:
        return all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a.tolist(), b.tolist(), strict=True))

    assert [(o.prompt_id, o.sample_index) for o in streamed.outputs] == [
        (o.prompt_id, o.sample_index) for o in staged.outputs
    ]
    assert same_floats(staged.rewards, streamed.rewards)
    assert staged.valid.tolist() == streamed.valid.tolist()
    assert same_floats(staged.format_scores, streamed.format_scores)
    for d in DIMENSIONS:
        assert same_floats(staged.dimension_scores[d], streamed.dimension_scores[d]), d
    assert staged.reasons == streamed.reasons
    assert staged.re_edits == streamed.re_edits
    assert staged.texts == streamed.texts
    assert staged.actions == streamed.actions
    assert staged.counts == streamed.counts
    assert len(staged.edit_latencies) == len(streamed.edit_latencies)
    for a, b in zip(staged.final_images, streamed.final_images, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.size == b.size and a.tobytes() == b.tobytes()
    for a, b in zip(staged.judge_results, streamed.judge_results, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert (a.scores, a.valid, a.reason, a.cached, a.calls) == (b.scores, b.valid, b.reason, b.cached, b.calls)
    assert set(staged.timings) == set(streamed.timings) == {"edit", "judge", "reward"}
    for batch in (staged, streamed):
        stages = {s[0] for s in batch.spans}
        assert stages == {"edit", "judge"}
        assert all(end >= start and items > 0 for _, start, end, items in batch.spans)
        # every edit ran in some span (a pool edits identical requests once, so there may be fewer items)
        assert 0 < sum(items for stage, *_, items in batch.spans if stage == "edit") <= batch.counts["edits"]


def run_both(cfg, rows, outputs, order, editor_staged, editor_streamed) -> tuple[ScoredBatch, ScoredBatch]:
    staged = RewardPipeline(cfg, editor_staged, SandboxJudge()).score(rows, outputs)
    streamed = RewardPipeline(cfg, editor_streamed, SandboxJudge()).score_stream(rows, shards(outputs, order))
    return staged, streamed


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_streaming_equals_staged_in_process(name):
    cfg = load_config(None, CONFIGS[name])
    rows = sandbox_rows(5)
    outputs = sandbox_outputs(rows)
    staged, streamed = run_both(cfg, rows, outputs, [[3, 4], [0], [1, 2]], SandboxEditor(), SandboxEditor())
    assert_same(staged, streamed)
    # the comparison is not vacuous: real edits, judged and failed samples, and masks
    assert staged.counts["edits"] >= 10 and staged.counts["judged"] >= 10
    assert staged.valid.any() and len(set(staged.rewards[staged.valid].tolist())) > 2


def test_streaming_misorders_nothing_when_chunks_interleave_rows():
    cfg = load_config(None, CONFIGS["zero_reward"])
    rows = sandbox_rows(3)
    outputs = sandbox_outputs(rows)
    staged = RewardPipeline(cfg, SandboxEditor(), SandboxJudge()).score(rows, outputs)
    single = [[o] for o in reversed(outputs)]  # one sample per chunk, last first
    streamed = RewardPipeline(cfg, SandboxEditor(), SandboxJudge()).score_stream(rows, single)
    assert_same(staged, streamed)


def test_streaming_equals_staged_on_a_two_replica_pool(ray_session):
    from easyr1.config.cluster import PoolPlacement
    from easyr1.editing.pool import EditorPool

    cfg = load_config(None, CONFIGS["improvement_skip_edit"])
    rows = sandbox_rows(6)
    outputs = sandbox_outputs(rows)
    with EditorPool(
        SandboxEditor,
        num_replicas=2,
        batch_size=2,
        placement=PoolPlacement(num_cpus_per_worker=0.5),
        identity_includes_metadata=True,
    ) as pool:
        reference = RewardPipeline(cfg, SandboxEditor(), SandboxJudge()).score(rows, outputs)
        staged = RewardPipeline(cfg, pool, SandboxJudge()).score(rows, outputs)
        staged_metrics = pool.drain_metrics()
        streamed = RewardPipeline(cfg, pool, SandboxJudge()).score_stream(
            rows, shards(outputs, [[4, 5], [0, 1, 2], [3]])
        )
        streamed_metrics = pool.drain_metrics()
    assert_same(reference, staged)
    assert_same(staged, streamed)
    for key in ("editor/requests", "editor/edits/ok", "editor/edits/failed", "editor/dedupe_saved"):
        assert streamed_metrics[key] == staged_metrics[key], key
    assert staged_metrics["editor/dedupe_saved"] >= 1
    replicas = {s for s in streamed.spans if s[0] == "edit"}
    assert len(replicas) > 2  # one span per replica call, several calls


# -- failures -------------------------------------------------------------------------------------------------


def _rows(n):
    img = Image.new("RGB", (8, 8), (1, 2, 3))
    return [EditSample(id=f"r{i}", task="t", instruction="x", source_image=img, edited_image=img) for i in range(n)]


GOOD = "<CoT>The shadow falls the wrong way.</CoT>\n<Re_edit>Move the shadow to the left</Re_edit>"


def _outs(rows, n=2, text=GOOD):
    return [RolloutOutput(row.id, j, text, [1]) for row in rows for j in range(n)]


class SlowEditor:
    """Edits by copying after ``delay_s``; raises on the ``raise_on``-th call; fails 'explode' instructions."""

    def __init__(self, delay_s=0.05, raise_on=None):
        self.delay_s, self.raise_on, self.calls = delay_s, raise_on, 0

    def edit(self, requests):
        self.calls += 1
        time.sleep(self.delay_s)
        if self.raise_on is not None and self.calls >= self.raise_on:
            raise RuntimeError("editor broke")
        return [
            EditResult.failure("blank_output") if "explode" in r.instruction else EditResult(r.image.copy(), ok=True)
            for r in requests
        ]


class Judge8:
    def __init__(self, fail_keys=(), raise_after=None, delay_s=0.0):
        self.fail_keys, self.raise_after, self.delay_s = set(fail_keys), raise_after, delay_s
        self.calls = 0
        self.lock = threading.Lock()

    def score_batch(self, requests):
        with self.lock:
            self.calls += 1
            calls = self.calls
        time.sleep(self.delay_s)
        if self.raise_after is not None and calls > self.raise_after:
            raise ConnectionError("judge exploded")
        return [
            JudgeResult.failure("timeout")
            if r.key in self.fail_keys
            else JudgeResult(dict.fromkeys(DIMENSIONS, 8.0), True)
            for r in requests
        ]


def _cfg():
    return load_config(None, CONFIGS["zero_reward"])


def _threads_settle(before: set[threading.Thread]) -> list[threading.Thread]:
    end = time.monotonic() + 5
    while time.monotonic() < end:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra:
            return []
        time.sleep(0.05)
    return extra


def test_failed_edits_and_judge_results_are_masked_as_staged():
    rows = _rows(3)
    outputs = _outs(rows)
    outputs[1] = RolloutOutput("r0", 1, GOOD.replace("Move the shadow", "explode the shadow"), [1])
    judge_fail = {"r2/0"}
    staged = RewardPipeline(_cfg(), SlowEditor(0), Judge8(judge_fail)).score(rows, outputs)
    streamed = RewardPipeline(_cfg(), SlowEditor(0), Judge8(judge_fail)).score_stream(
        rows, [outputs[4:], outputs[:2], outputs[2:4]]
    )
    assert streamed.reasons == staged.reasons == [None, "edit:blank_output", None, None, "judge:timeout", None]
    assert streamed.counts == staged.counts
    assert streamed.counts["edit_failed"] == 1 and streamed.counts["judge_failed"] == 1


def test_editor_exception_mid_stream_is_raised_once_without_leaks():
    rows = _rows(4)
    outputs = _outs(rows)
    before = set(threading.enumerate())
    editor = SlowEditor(raise_on=2)
    chunks_seen = []

    def chunks():
        for k in range(4):
            chunks_seen.append(k)
            time.sleep(0.1)  # the second edit call fails while this generator still "generates"
            yield outputs[2 * k : 2 * k + 2]

    start = time.monotonic()
    with pytest.raises(RuntimeError, match="editor broke"):
        RewardPipeline(_cfg(), editor, Judge8()).score_stream(rows, chunks())
    assert time.monotonic() - start < 10
    assert len(chunks_seen) < 4 or editor.calls <= 4  # it stopped taking chunks or the calls were bounded
    assert _threads_settle(before) == []


def test_raising_judge_does_not_hang_and_leaks_nothing():
    rows = _rows(4)
    outputs = _outs(rows)
    before = set(threading.enumerate())
    judge = Judge8(raise_after=2, delay_s=0.02)
    start = time.monotonic()
    with pytest.raises(ConnectionError, match="judge exploded"):
        RewardPipeline(_cfg(), SlowEditor(0.02), judge).score_stream(rows, [outputs[:4], outputs[4:]])
    assert time.monotonic() - start < 10
    assert _threads_settle(before) == []


def test_rollout_failure_mid_stream_awaits_the_edits_under_way():
    rows = _rows(2)
    outputs = _outs(rows)
    before = set(threading.enumerate())
    editor = SlowEditor(0.2)

    def chunks():
        yield outputs[:2]
        raise RuntimeError("engine lost for good")

    with pytest.raises(RuntimeError, match="engine lost for good"):
        RewardPipeline(_cfg(), editor, Judge8()).score_stream(rows, chunks())
    assert editor.calls == 1  # the edit under way finished (awaited), nothing more was sent
    assert _threads_settle(before) == []


def test_unknown_or_repeated_outputs_are_refused():
    rows = _rows(1)
    outputs = _outs(rows)
    with pytest.raises(ValueError, match="unknown prompt"):
        RewardPipeline(_cfg(), SlowEditor(0), Judge8()).score_stream(rows, [[RolloutOutput("zz", 0, GOOD, [1])]])
    with pytest.raises(ValueError, match="twice"):
        RewardPipeline(_cfg(), SlowEditor(0), Judge8()).score_stream(rows, [outputs, outputs[:1]])


def test_replica_dying_mid_stream_is_recovered_and_accounted_once(ray_session, tmp_path):
    import functools

    from easyr1.config.cluster import PoolPlacement
    from easyr1.editing.pool import EditorPool
    from easyr1.testing.simulated_editor import SimulatedEditor

    rows = _rows(4)
    outputs = _outs(rows)
    outputs[5] = RolloutOutput("r2", 1, GOOD.replace("to the left", "to the left !die-once"), [1])
    factory = functools.partial(SimulatedEditor, 0.05, tmp_path, allow_exit=True)
    with EditorPool(factory, num_replicas=2, batch_size=2, placement=PoolPlacement(num_cpus_per_worker=0.5)) as pool:
        streamed = RewardPipeline(_cfg(), pool, Judge8()).score_stream(rows, [outputs[4:], outputs[:4]])
        metrics = pool.drain_metrics()
        staged = RewardPipeline(_cfg(), pool, Judge8()).score(rows, outputs)  # the marker is set: no death now
        assert pool.drain_metrics()["editor/restarts"] == 0
    assert metrics["editor/restarts"] == 1 and metrics["editor/replica_failures"] == 1
    assert metrics["editor/requests"] == 8 and metrics["editor/edits/ok"] == 8
    assert streamed.reasons == staged.reasons == [None] * 8 and streamed.counts == staged.counts
    for a, b in zip(staged.final_images, streamed.final_images, strict=True):
        assert a.tobytes() == b.tobytes()


def test_preliminary_judgement_once_per_row_cached_and_failures_masked_as_staged():
    cfg = load_config(None, [*CONFIGS["improvement_skip_edit"], "worker.reward.strategy=weighted_sum"])
    rows = _rows(2)
    outputs = _outs(rows)

    def two_passes(streaming: bool):
        pipeline = RewardPipeline(cfg, SlowEditor(0), Judge8(fail_keys={"r0/preliminary"}))
        if streaming:
            return [pipeline.score_stream(rows, [outputs[2:], outputs[:2]]) for _ in range(2)]
        return [pipeline.score(rows, outputs) for _ in range(2)]

    staged, staged_again = two_passes(False)
    streamed, streamed_again = two_passes(True)
    assert streamed.reasons == staged.reasons == ["judge_preliminary:timeout"] * 2 + [None] * 2
    assert streamed_again.reasons == staged_again.reasons  # r0 tried again (failures are not cached), r1 cached
    assert streamed.rewards[2:].tolist() == staged.rewards[2:].tolist()
    assert sum(s[3] for s in streamed.spans if s[0] == "judge") == 4 + 2  # samples + both preliminary images
    assert sum(s[3] for s in streamed_again.spans if s[0] == "judge") == 4 + 1  # r1's preliminary is cached


def test_a_batch_dependent_judge_is_called_as_staged():
    from easyr1.sandbox.controls import ShufflingJudge

    cfg = load_config(None, CONFIGS["improvement_skip_edit"])
    rows = sandbox_rows(4)
    outputs = sandbox_outputs(rows)
    staged = RewardPipeline(cfg, SandboxEditor(), ShufflingJudge(SandboxJudge(), 3)).score(rows, outputs)
    judge = ShufflingJudge(SandboxJudge(), 3)
    streamed = RewardPipeline(cfg, SandboxEditor(), judge).score_stream(rows, shards(outputs, [[2, 3], [0, 1]]))
    assert_same(staged, streamed)
    assert judge.shuffled_batches == 2  # the samples' call, then the preliminary images'


def test_on_span_reports_each_call_as_it_ends_from_the_worker_threads():
    """``on_span`` gets every edit and judge call's span once, on the thread that ended it, as the call ends (the
    first edit call's span arrives while the rollout iterator still holds later chunks back); the same spans as
    ``ScoredBatch.spans``."""
    rows = _rows(3)
    outputs = _outs(rows)
    got: list[tuple[tuple[str, float, float, int], str, float]] = []
    lock = threading.Lock()
    first_edit = threading.Event()

    def on_span(stage, start, end, items):
        with lock:
            got.append(((stage, start, end, items), threading.current_thread().name, time.perf_counter()))
        if stage == "edit":
            first_edit.set()

    def chunks():
        yield outputs[:2]
        assert first_edit.wait(10), "the first edit call's span was not reported before the pass ended"
        yield outputs[2:]

    streamed = RewardPipeline(_cfg(), SlowEditor(0.05), Judge8(delay_s=0.02)).score_stream(
        rows, chunks(), on_span=on_span
    )
    assert sorted(span for span, _, _ in got) == sorted(streamed.spans)
    assert [s for s, *_ in streamed.spans].count("edit") == 2 and [s for s, *_ in streamed.spans].count("judge") == 6
    assert all(name != threading.main_thread().name for _, name, _ in got)
    assert all(span[2] <= at for span, _, at in got)


def test_a_failing_on_span_does_not_break_the_scoring():
    rows = _rows(2)
    outputs = _outs(rows)

    def on_span(*_):
        raise RuntimeError("telemetry broke")

    staged = RewardPipeline(_cfg(), SlowEditor(0), Judge8()).score(rows, outputs)
    streamed = RewardPipeline(_cfg(), SlowEditor(0), Judge8()).score_stream(rows, [outputs], on_span=on_span)
    assert streamed.reasons == staged.reasons and streamed.counts == staged.counts
