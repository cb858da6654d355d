"""Pipelined step: the real driver (``GRPOTrainer.fit``) over real Ray pools whose stages cost simulated time.

Every stage is a real pool or client with a sleep for its GPU work (``easyr1.testing.simulated_stages``): the real
``RolloutPool`` runs the ``simulated`` engine plugin (R s per batch, spread over the engines; weight load S s through
the pool's object-store sync), the real ``EditorPool`` runs k ``RecordingEditor`` replicas (E s per image, batched
per replica), the real HTTP judge (``OpenAIJudge``, ``judge.mode`` per_dimension = 5 calls per sample) calls the
loopback test server in a child process (J s per call, ``judge.max_concurrency`` calls in flight), and a
``SimulatedActorPool`` of Ray workers takes U s per update. Rows come from the sandbox data loader; rewards, masks,
accounting and the loop are the driver's own (sample tables are off: their PNG writing is driver I/O, not a pool
stage). Each pipeline mode (``trainer.pipeline``: ``staged``, ``streaming``, ``off_policy_1``) runs ``--steps``
steps on the same pools. A mode this checkout cannot run is reported as unavailable with the reason and null
numbers, never estimated: no ``trainer.pipeline`` setting, streaming without the rollout pool's
``generate_stream`` or ``RewardPipeline.score_stream`` (the driver would quietly run it staged), or a run that
failed.

Per setting: E_total = E × edits / k, J_total = J × calls / concurrency,
``bound_streaming_s`` = R + max(E_total, J_total) + U + S, ``bound_off_policy_s`` = max(R, E_total, J_total, U, S)
(the largest single stage), ``staged_sum_s`` = R + E_total + J_total + U + S. ``step_s`` is steady state: the wall
time from the end of step ``--warmup`` to the end of the last step (when the driver logs the step's row), over the
steps in between; the first ``--warmup`` steps (default 2: start-up and, off-policy, step 1 generated on the spot
and the pipeline filling) are excluded. Measured by the components themselves over the same window, not by the
driver's telemetry: ``busy_<mode>`` (busy time / (members × window); members = engines, replicas, actor ranks, or
the judge's concurrency slots; each engine, replica and actor rank logs its busy intervals, the judge server each
call's arrival), ``overlap_s_<mode>`` (seconds per step in which two pools worked at the same time: streaming
shows editor+judge, off-policy rollout+editor) and ``staleness_<mode>`` (per trained sample: the actor's weights
version at its update minus the version its engine generated it with, counted by value). The driver's own
``pipeline/*`` and ``timing/*`` means are listed beside them (``driver_pipeline_<mode>``, ``driver_timings_<mode>``).
``busy_ideal_off_policy`` is each pool's work per step over ``bound_off_policy_s``: the most it can be busy.

Settings (``--setting``, repeatable; default all): ``production`` is shaped like the reference step (16 prompts ×
n 4 = 64 edits, 320 judge calls; the editor and the judge the largest stages), its seconds scaled down (R 1.6,
E_total 2.0, J_total 2.0, U 1.6, S 0.2); ``editor_bound`` (single-call judging, the editor 4× every other stage);
``rollout_bound``. About 2.5 min per setting on 2 busy cores (most of it Ray and pool start-up).

    python benchmarks/pipeline.py                           # every setting, 6 steps per mode, first 2 excluded
    python benchmarks/pipeline.py --setting production --steps 8 --warmup 2
    python benchmarks/pipeline.py --modes staged,off_policy_1 --out runs/pipeline   # keep the run folders

Prints a table, then one JSON line: ``step_s_staged``, ``step_s_streaming``, ``step_s_off_policy``,
``bound_streaming_s``, ``bound_off_policy_s``, ``ratio_streaming_to_bound``, ``ratio_off_policy_to_bound``,
``throughput_ratio_off_policy_vs_staged``, ``busy_<mode>`` … of the production setting (else the first one run) at
the top level, the other settings under ``other_settings``. Goals (issue 20): streaming ≤ 1.10 × its bound and
off-policy ≤ 1.15 × its bound (every setting); on the production setting off-policy ≥ 1.8 × the staged throughput
and every pool ≥ 80 % busy off-policy. Exit status 0 only when every goal was measured and passed.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import math
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from easyr1.testing.simulated_stages import (
    ENGINE_NAME,
    EngineSettings,
    RecordingEditor,
    SimulatedActorPool,
    SimulatedRolloutEngine,
)
from easyr1.testing.stage_records import (
    StepClock,
    busy_fraction,
    judge_intervals,
    measured_staleness,
    overlap_seconds,
    read_intervals,
)

MODES = ("staged", "streaming", "off_policy_1")
KEY = {"staged": "staged", "streaming": "streaming", "off_policy_1": "off_policy"}
"""Mode → the suffix of its JSON keys."""
POOLS = ("rollout", "editor", "judge", "actor")
PAIRS = (("rollout", "editor"), ("rollout", "judge"), ("editor", "judge"), ("editor", "actor"), ("judge", "actor"))
"""Pools whose working at the same time is reported (``overlap_s``, seconds per step)."""
RUN_FIELDS = ("busy", "overlap_s", "staleness", "step_s_each", "samples_valid", "driver_pipeline", "driver_timings")
"""What each mode's run reports, as ``<field>_<mode>`` in the JSON."""
GOAL_STREAMING = 1.10
GOAL_OFF_POLICY = 1.15
GOAL_THROUGHPUT = 1.8
GOAL_BUSY = 0.80
API_KEY = "sk-pipeline-benchmark"
DIMENSIONS_PER_SAMPLE = 5

logger = logging.getLogger("pipeline")


@dataclass(frozen=True)
class Setting:
    """Stage costs and sizes of one benchmark setting (seconds are simulated GPU time)."""

    name: str
    rollout_s: float
    """R: one step's generation (all prompts × n, spread over the engines)."""
    edit_s: float
    """E: per edited image on one replica."""
    replicas: int
    """k: editor replicas."""
    judge_s: float
    """J: per judge call."""
    concurrency: int
    """``judge.max_concurrency``."""
    update_s: float
    """U: one policy update."""
    sync_s: float
    """S: one weight sync (the engines' side)."""
    prompts: int
    """``data.rollout_batch_size``."""
    n: int
    """``worker.rollout.n``."""
    judge_mode: str = "per_dimension"
    engines: int = 2
    editor_batch: int = 4

    @property
    def edits(self) -> int:
        return self.prompts * self.n

    @property
    def calls(self) -> int:
        return self.edits * (DIMENSIONS_PER_SAMPLE if self.judge_mode == "per_dimension" else 1)

    @property
    def edit_total_s(self) -> float:
        return self.edit_s * self.edits / self.replicas

    @property
    def judge_total_s(self) -> float:
        return self.judge_s * self.calls / self.concurrency

    @property
    def bound_streaming_s(self) -> float:
        return self.rollout_s + max(self.edit_total_s, self.judge_total_s) + self.update_s + self.sync_s

    @property
    def bound_off_policy_s(self) -> float:
        return max(self.rollout_s, self.edit_total_s, self.judge_total_s, self.update_s, self.sync_s)

    @property
    def staged_sum_s(self) -> float:
        return self.rollout_s + self.edit_total_s + self.judge_total_s + self.update_s + self.sync_s

    def ideal_busy_off_policy(self) -> dict[str, float]:
        """Each pool's work per step over ``bound_off_policy_s`` (the engines also load weights)."""
        work = {
            "rollout": self.rollout_s + self.sync_s,
            "editor": self.edit_total_s,
            "judge": self.judge_total_s,
            "actor": self.update_s,
        }
        return {pool: min(1.0, w / self.bound_off_policy_s) for pool, w in work.items()}

    def capacity(self) -> dict[str, int]:
        return {"rollout": self.engines, "editor": self.replicas, "judge": self.concurrency, "actor": 1}


SETTINGS = {
    s.name: s
    for s in (
        # 64 edits and 320 judge calls per step, like the reference; editor and judge the largest stages.
        Setting("production", 1.6, 0.125, 4, 0.4, 64, 1.6, 0.2, prompts=16, n=4),
        Setting("editor_bound", 0.5, 0.125, 2, 0.25, 16, 0.5, 0.1, prompts=8, n=4, judge_mode="single_call"),
        Setting("rollout_bound", 2.0, 0.03125, 2, 0.2, 32, 0.8, 0.3, prompts=8, n=4),
    )
}


# ----------------------------------------------------------------------------------------------- the driver's modes


def mode_unavailable(mode: str, overrides: list[str], rollout: Any) -> str | None:
    """Why this checkout's driver cannot run ``mode`` (``None``: it can). Streaming also needs the pools' and the
    reward pipeline's streaming entry points: without them the driver runs the steps staged, which must not be
    reported as streaming."""
    from easyr1.config import load_config
    from easyr1.config.trainer import TrainerConfig
    from easyr1.trainer.scoring import RewardPipeline

    if not any(f.name == "pipeline" for f in dataclasses.fields(TrainerConfig)):
        return None if mode == "staged" else "this checkout has no trainer.pipeline setting"
    if mode == "streaming":
        missing = ["RolloutPool.generate_stream"] if not hasattr(rollout, "generate_stream") else []
        missing += [] if hasattr(RewardPipeline, "score_stream") else ["RewardPipeline.score_stream"]
        if missing:
            return f"no {', '.join(missing)} in this checkout (the driver would run the steps staged)"
    try:
        load_config(None, [*overrides, f"trainer.pipeline={mode}"])
    except Exception as exc:  # the config refuses the value: the mode is not there
        return _one_line(f"trainer.pipeline={mode} refused: {exc}")
    return None


def _one_line(text: str) -> str:
    """An error's first line without terminal colour codes (Ray colours its task errors), at most 300 chars."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines()[0][:300]


def pipeline_override(mode: str) -> list[str]:
    from easyr1.config.trainer import TrainerConfig

    return [f"trainer.pipeline={mode}"] if any(f.name == "pipeline" for f in dataclasses.fields(TrainerConfig)) else []


# ------------------------------------------------------------------------------------------------------- pools


@dataclass
class Pools:
    rollout: Any
    actor: Any
    editor: Any
    judge: Any
    server: Any
    record_dir: Path

    def close(self) -> None:
        for name, stop in (
            ("judge", self.judge.close),
            ("editor", self.editor.close),
            ("rollout", self.rollout.shutdown),
            ("actor", self.actor.close),
            ("judge server", self.server.stop),
        ):
            try:
                stop()
            except Exception as exc:  # keep closing the rest
                logger.warning("closing %s: %s", name, exc)


FIXED = """
    worker.rollout.weight_sync=object_store worker.rollout.check_sync_logprobs=false worker.image_edit.backend=sandbox
    judge.backend=openai judge.model=judge-benchmark judge.max_retries=0 judge.timeout_s=60
    worker.reward.strategy=weighted_sum cluster.num_cpus=8 cluster.rollout.num_cpus_per_worker=0.25
    cluster.editor.num_cpus_per_worker=0.25 cluster.actor.num_cpus_per_worker=0.25 trainer.total_epochs=1
    trainer.logger=[file] trainer.save_freq=-1 trainer.save_limit=1 trainer.resume=disable trainer.val_freq=-1
    telemetry.prometheus.enabled=false telemetry.images_per_table=0
""".split()  # noqa: SIM905 (one list, readable)
"""Config of every run (sample tables off: their PNG grids are driver I/O, not a pool stage)."""


def overrides_for(setting: Setting, data_dir: Path, out: Path, steps: int, base_url: str) -> list[str]:
    return [
        *FIXED,
        f"data.train_files={data_dir}",
        f"data.rollout_batch_size={setting.prompts}",
        f"worker.rollout.n={setting.n}",
        f"worker.actor.global_batch_size={setting.prompts}",
        f"worker.rollout.name={ENGINE_NAME}",
        f"worker.rollout.num_engines={setting.engines}",
        f"worker.image_edit.num_replicas={setting.replicas}",
        f"worker.image_edit.batch_size={setting.editor_batch}",
        f"judge.base_url={base_url}",
        f"judge.mode={setting.judge_mode}",
        f"judge.max_concurrency={setting.concurrency}",
        f"trainer.output_dir={out}",
        f"trainer.max_steps={steps}",
    ]


def start_pools(cfg: Any, setting: Setting, record_dir: Path, server: Any) -> Pools:
    from easyr1.editing.pool import EditorPool
    from easyr1.pools import ray_actor_options
    from easyr1.reward.judge.openai_judge import OpenAIJudge
    from easyr1.rollout.pool import RolloutPool

    SimulatedRolloutEngine.settings = EngineSettings(
        seconds_per_prompt=setting.rollout_s * setting.engines / setting.prompts,
        sync_s=setting.sync_s,
        record_dir=str(record_dir),
    )
    started: list[Any] = []
    try:
        rollout = RolloutPool(cfg)
        started.append(rollout.shutdown)
        actor = SimulatedActorPool(
            update_s=setting.update_s, record_dir=record_dir, actor_options=ray_actor_options(cfg.cluster.actor)
        )
        started.append(actor.close)
        editor = EditorPool(
            functools.partial(RecordingEditor, setting.edit_s, str(record_dir)),
            num_replicas=setting.replicas,
            batch_size=setting.editor_batch,
            placement=cfg.cluster.editor,
        )
        started.append(editor.close)
        judge = OpenAIJudge(cfg.judge, api_key=API_KEY)
    except BaseException:
        for stop in reversed(started):
            stop()
        raise
    return Pools(rollout, actor, editor, judge, server, record_dir)


# ---------------------------------------------------------------------------------------------------- one mode


def run_mode(mode: str, setting: Setting, pools: Pools, overrides: list[str], out: Path, warmup: int) -> dict[str, Any]:
    """``GRPOTrainer.fit`` in ``mode`` on the shared pools; steady-state step time, busy fractions, staleness."""
    from easyr1.config import load_config
    from easyr1.data import build_dataloader
    from easyr1.telemetry import Telemetry
    from easyr1.trainer.components import Components, StepBatches
    from easyr1.trainer.grpo import GRPOTrainer

    run_dir = out / mode
    cfg = load_config(None, [*overrides, f"trainer.output_dir={run_dir}", *pipeline_override(mode)])
    clock = StepClock(Telemetry(cfg, run_dir))
    loader = StepBatches(build_dataloader(cfg.data, "train"))
    comps = Components(cfg, pools.actor, pools.rollout, pools.editor, pools.judge, clock, loader, None)  # type: ignore[arg-type]
    pools.server.reset()
    started = time.monotonic()
    try:
        history = GRPOTrainer(cfg, run_dir, components=comps).fit()
    finally:
        clock.inner.close()
    finished = time.monotonic()
    steps = len(history)
    ends = [t for _, t in clock.ends]
    result: dict[str, Any] = {"steps": steps, "warmup": warmup, "wall_s": finished - started}
    if steps != cfg.trainer.max_steps or len(ends) != steps:
        raise RuntimeError(f"{mode}: {steps} steps completed, {len(ends)} rows logged, {cfg.trainer.max_steps} asked")
    if steps - warmup < 1:
        raise ValueError(f"--steps must exceed --warmup ({steps} <= {warmup})")
    window = (ends[warmup - 1] if warmup else started, ends[-1])
    result["step_s"] = (window[1] - window[0]) / (steps - warmup)
    result["step_s_each"] = [b - a for a, b in zip([started, *ends[:-1]], ends, strict=True)]
    intervals = [iv for iv in read_intervals(pools.record_dir) if started <= iv.start < finished]
    intervals += judge_intervals(pools.server.stats(), setting.judge_s)
    capacity = setting.capacity()
    result["busy"] = {
        pool: busy_fraction([iv for iv in intervals if iv.pool == pool], *window, capacity[pool]) for pool in POOLS
    }
    by_pool = {pool: [iv for iv in intervals if iv.pool == pool] for pool in POOLS}
    result["overlap_s"] = {
        f"{a}+{b}": overlap_seconds(by_pool[a], by_pool[b], *window) / (steps - warmup) for a, b in PAIRS
    }
    result["staleness"] = measured_staleness(intervals)
    result["samples_valid"] = sum(row.get("samples/valid", 0) for row in clock.rows)
    result["driver_pipeline"] = _means(clock.rows[warmup:], "pipeline/")
    result["driver_timings"] = _means(clock.rows[warmup:], "timing/")
    return result


def _means(rows: list[dict[str, float]], prefix: str) -> dict[str, float]:
    """Mean of each finite ``prefix*`` metric over the rows that have it (the prefix dropped)."""
    keys = sorted({k for row in rows for k in row if k.startswith(prefix)})
    values = {k: [row[k] for row in rows if k in row and math.isfinite(row[k])] for k in keys}
    return {k.removeprefix(prefix): statistics.fmean(v) for k, v in values.items() if v}


# ------------------------------------------------------------------------------------------------- one setting


def run_setting(setting: Setting, modes: list[str], steps: int, warmup: int, out: Path) -> dict[str, Any]:
    """Start Ray and the pools once, run every mode on them, stop everything; the setting's summary."""
    import ray

    from easyr1.config import load_config
    from easyr1.pools.placement import init_ray
    from easyr1.sandbox.generator import write_sandbox_dataset
    from easyr1.testing.judge_server import ServerBehaviour, SubprocessJudgeServer

    for old in ("data", "busy", *MODES):  # a folder kept from an earlier run (--out) starts empty
        shutil.rmtree(out / old, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = out / "data"
    write_sandbox_dataset(data_dir, rows=setting.prompts * (steps + 1), seed=0, image_size=32)
    record_dir = out / "busy"
    server = SubprocessJudgeServer(ServerBehaviour(latency_s=setting.judge_s)).start()
    temp = tempfile.mkdtemp(prefix="rp", dir="/tmp")  # short: Ray's socket paths
    runs: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    try:
        overrides = overrides_for(setting, data_dir, out, steps, server.base_url)
        cfg = load_config(None, overrides)
        init_ray(cfg.cluster, temp_dir=temp, log_to_driver=False)
        pools = start_pools(cfg, setting, record_dir, server)
        try:
            for mode in modes:
                reason = mode_unavailable(mode, overrides, pools.rollout)
                if reason is not None:
                    unavailable[mode] = reason
                    logger.warning("%s / %s: not available: %s", setting.name, mode, reason)
                    continue
                logger.info("%s / %s: %d steps", setting.name, mode, steps)
                try:
                    runs[mode] = run_mode(mode, setting, pools, overrides, out, warmup)
                except Exception as exc:  # recorded, never estimated
                    logger.exception("%s / %s failed", setting.name, mode)
                    unavailable[mode] = _one_line(f"failed: {type(exc).__name__}: {exc}")
        finally:
            pools.close()
    finally:
        if ray.is_initialized():
            ray.shutdown()
        server.stop()
        shutil.rmtree(temp, ignore_errors=True)
    return summarise(setting, runs, unavailable, steps, warmup)


def _rounded(x: Any, digits: int = 3) -> Any:
    if isinstance(x, float):
        return round(x, digits)
    if isinstance(x, dict):
        return {k: _rounded(v, digits) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v, digits) for v in x]
    return x


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a / b, 3)


def summarise(
    setting: Setting, runs: dict[str, Any], unavailable: dict[str, str], steps: int, warmup: int
) -> dict[str, Any]:
    """The setting's JSON: its stages and bounds, then per mode the measurements (``None`` for a mode not run)."""
    step = {mode: runs[mode]["step_s"] if mode in runs else None for mode in MODES}
    stages = {k: v for k, v in dataclasses.asdict(setting).items() if k != "name"}
    stages.update(edits=setting.edits, judge_calls=setting.calls)
    stages.update(edit_total_s=setting.edit_total_s, judge_total_s=setting.judge_total_s)
    s: dict[str, Any] = {"setting": setting.name, "stages": _rounded(stages), "steps": steps}
    s["warmup_steps_excluded"] = warmup
    s.update({f"step_s_{KEY[mode]}": _rounded(step[mode]) for mode in MODES})
    s["staged_sum_s"] = _rounded(setting.staged_sum_s)
    s["bound_streaming_s"] = _rounded(setting.bound_streaming_s)
    s["bound_off_policy_s"] = _rounded(setting.bound_off_policy_s)
    s["ratio_staged_to_sum"] = _ratio(step["staged"], setting.staged_sum_s)
    s["ratio_streaming_to_bound"] = _ratio(step["streaming"], setting.bound_streaming_s)
    s["ratio_off_policy_to_bound"] = _ratio(step["off_policy_1"], setting.bound_off_policy_s)
    s["throughput_ratio_streaming_vs_staged"] = _ratio(step["staged"], step["streaming"])
    s["throughput_ratio_off_policy_vs_staged"] = _ratio(step["staged"], step["off_policy_1"])
    for mode in MODES:
        run = runs.get(mode)
        for field in RUN_FIELDS:
            s[f"{field}_{KEY[mode]}"] = None if run is None else _rounded(run[field])
    s["busy_ideal_off_policy"] = _rounded(setting.ideal_busy_off_policy())
    s["unavailable"] = unavailable
    s["goal_values"] = goal_values(setting, s)
    s["goals"] = goals(setting, s)
    return s


def goal_values(setting: Setting, s: dict[str, Any]) -> dict[str, list[Any]]:
    """Each goal: [measured value or None when its mode is unavailable, comparison, target]."""
    g: dict[str, list[Any]] = {
        "streaming_le_1.10_bound": [s["ratio_streaming_to_bound"], "<=", GOAL_STREAMING],
        "off_policy_le_1.15_bound": [s["ratio_off_policy_to_bound"], "<=", GOAL_OFF_POLICY],
    }
    if setting.name == "production":
        busy = s["busy_off_policy"]
        g["off_policy_ge_1.8x_staged"] = [s["throughput_ratio_off_policy_vs_staged"], ">=", GOAL_THROUGHPUT]
        g["off_policy_every_pool_ge_80pct_busy"] = [None if busy is None else min(busy.values()), ">=", GOAL_BUSY]
    return g


def goals(setting: Setting, s: dict[str, Any]) -> dict[str, bool | None]:
    """Each goal: True/False when measured, None when its mode is unavailable."""
    return {
        name: None if value is None else (value <= target if op == "<=" else value >= target)
        for name, (value, op, target) in goal_values(setting, s).items()
    }


# ------------------------------------------------------------------------------------------------------ output


def fmt(x: float | None, spec: str = ".2f") -> str:
    return "—" if x is None else format(x, spec)


def print_table(summaries: list[dict[str, Any]]) -> None:
    print(
        f"{'setting':<14} {'mode':<13} {'step s':>7} {'bound s':>8} {'ratio':>6} {'thr×':>6}  "
        f"{'busy: roll':>10} {'edit':>5} {'judge':>5} {'actor':>5}  {'ovl r+e':>7} {'e+j':>5}  staleness"
    )
    for s in summaries:
        st = s["stages"]
        print(
            f"{s['setting']:<14} R {st['rollout_s']:g}  E {st['edit_s']:g}×{st['edits']}/k{st['replicas']}="
            f"{st['edit_total_s']:g}  J {st['judge_s']:g}×{st['judge_calls']}/{st['concurrency']}="
            f"{st['judge_total_s']:g}  U {st['update_s']:g}  S {st['sync_s']:g}   staged sum {s['staged_sum_s']:g}"
        )
        bounds = {
            "staged": s["staged_sum_s"],
            "streaming": s["bound_streaming_s"],
            "off_policy_1": s["bound_off_policy_s"],
        }
        for mode in MODES:
            k = KEY[mode]
            step = s[f"step_s_{k}"]
            busy = s[f"busy_{k}"]
            if step is None:
                why = s["unavailable"].get(mode, "not run")
                print(f"{'':<14} {mode:<13} {'—':>7} {bounds[mode]:>8.2f}  unavailable: {why}")
                continue
            thr = s["step_s_staged"] / step if s["step_s_staged"] else None
            b = [fmt(busy[p]) for p in POOLS]
            ovl = s[f"overlap_s_{k}"]
            print(
                f"{'':<14} {mode:<13} {step:>7.2f} {bounds[mode]:>8.2f} {step / bounds[mode]:>6.2f} {fmt(thr):>6}  "
                f"{b[0]:>10} {b[1]:>5} {b[2]:>5} {b[3]:>5}  {fmt(ovl['rollout+editor']):>7} "
                f"{fmt(ovl['editor+judge']):>5}  {s[f'staleness_{k}']}"
            )
        ideal = s["busy_ideal_off_policy"]
        print(
            f"{'':<14} {'(ideal, off)':<13} {'':>7} {'':>8} {'':>6} {'':>6}  "
            + " ".join(f"{fmt(ideal[p]):>{w}}" for p, w in zip(POOLS, (10, 5, 5, 5), strict=True))
        )
        for goal, (value, op, target) in s["goal_values"].items():
            ok = s["goals"][goal]
            verdict = "PASS" if ok else "FAIL" if ok is False else "not measured (mode unavailable)"
            print(f"{'':<14} goal {goal}: {fmt(value)} {op} {target:g}  {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", action="append", choices=sorted(SETTINGS), help="repeatable (default: all)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated (default {','.join(MODES)})")
    parser.add_argument("--steps", type=int, default=6, help="GRPO steps per mode (default 6)")
    parser.add_argument("--warmup", type=int, default=2, help="first steps excluded from step_s (default 2)")
    parser.add_argument("--out", type=Path, default=None, help="keep the run folders here (default: a temp folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    modes = [m for m in args.modes.split(",") if m]
    if bad := [m for m in modes if m not in MODES]:
        parser.error(f"unknown mode(s) {bad}; choose from {MODES}")
    names = args.setting or list(SETTINGS)
    root = args.out or Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    summaries = []
    try:
        for name in names:
            summaries.append(run_setting(SETTINGS[name], modes, args.steps, args.warmup, root / name))
    finally:
        if args.out is None:
            shutil.rmtree(root, ignore_errors=True)
    print_table(summaries)
    head = next((s for s in summaries if s["setting"] == "production"), summaries[0])
    others = {s["setting"]: s for s in summaries if s is not head}
    line = {"benchmark": "pipeline", **head, "other_settings": others}
    every = [ok for s in summaries for ok in s["goals"].values()]
    line["pass"] = bool(every) and all(ok is True for ok in every)
    print(json.dumps(line))
    return 0 if line["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
