"""Pipelined step: the real driver (``GRPOTrainer.fit``) over real Ray pools whose stages cost simulated time.

Every stage is a real pool or client with a sleep for its GPU work (``easyr1.testing.simulated_stages``): the real
``RolloutPool`` runs the ``simulated`` engine plugin (R s per batch, spread over the engines; weight load S s through
the pool's object-store sync), the real ``EditorPool`` runs k ``RecordingEditor`` replicas (E s per image, batched
per replica), the real HTTP judge (``OpenAIJudge``, ``judge.mode`` per_dimension = 5 calls per sample) calls the
loopback test server in a child process (J s per call, ``judge.max_concurrency`` calls in flight), and a
``SimulatedActorPool`` of Ray workers takes U s per update. Rows come from the sandbox data loader; rewards, masks,
accounting and the loop are the driver's own (sample tables are off: their PNG writing is driver I/O, not a pool
stage). Each pipeline mode (``trainer.pipeline``: ``staged``, ``streaming``, ``off_policy_1``, and
``off_policy_1+rollout_lp``: ``off_policy_1`` with ``trainer.behaviour_log_probs: rollout``, the engines'
log-probs, so update t runs beside rollout t+1) runs ``--steps`` steps on the same pools. A mode this checkout
cannot run is reported as unavailable with the reason and null numbers, never estimated: no ``trainer.pipeline``
(or ``trainer.behaviour_log_probs``) setting, streaming without the rollout pool's ``generate_stream`` or
``RewardPipeline.score_stream`` (the driver would quietly run it staged), or a run that failed.

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
``throughput_ratio_off_policy_vs_staged``, ``busy_<mode>`` … (the fourth row's keys end in
``off_policy_rollout_lp``) of the production setting (else the first one run) at the top level, the other
settings under ``other_settings``. Goals (issue 20): streaming ≤ 1.10 × its bound and off-policy ≤ 1.15 × its
bound (every setting); on the production setting off-policy ≥ 1.8 × the staged throughput and every pool ≥ 80 %
busy off-policy (each off-policy row is held to them). Exit status 0 only when every goal was measured and passed.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling pipeline_report.py

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
from pipeline_report import (
    API_KEY,
    MODES,
    PAIRS,
    POOLS,
    ROLLOUT_LP,
    SETTINGS,
    Setting,
    print_table,
    summarise,
)

logger = logging.getLogger("pipeline")


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
    if mode == ROLLOUT_LP and not any(f.name == "behaviour_log_probs" for f in dataclasses.fields(TrainerConfig)):
        return "this checkout has no trainer.behaviour_log_probs setting"
    if mode == "streaming":
        missing = ["RolloutPool.generate_stream"] if not hasattr(rollout, "generate_stream") else []
        missing += [] if hasattr(RewardPipeline, "score_stream") else ["RewardPipeline.score_stream"]
        if missing:
            return f"no {', '.join(missing)} in this checkout (the driver would run the steps staged)"
    try:
        load_config(None, [*overrides, *pipeline_override(mode)])
    except Exception as exc:  # the config refuses the value: the mode is not there
        return _one_line(f"{' '.join(pipeline_override(mode))} refused: {exc}")
    return None


def _one_line(text: str) -> str:
    """An error's first line without terminal colour codes (Ray colours its task errors), at most 300 chars."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines()[0][:300]


def pipeline_override(mode: str) -> list[str]:
    """The config overrides of ``mode`` (``off_policy_1+rollout_lp``: ``off_policy_1`` with the engines' behaviour
    log-probs)."""
    from easyr1.config.trainer import TrainerConfig

    if not any(f.name == "pipeline" for f in dataclasses.fields(TrainerConfig)):
        return []
    if mode == ROLLOUT_LP:
        return ["trainer.pipeline=off_policy_1", "trainer.behaviour_log_probs=rollout"]
    return [f"trainer.pipeline={mode}"]


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
