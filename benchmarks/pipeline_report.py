"""The pipeline benchmark's settings, bounds, goals and report (``benchmarks/pipeline.py`` runs them).

A setting's stage costs give its bounds: ``bound_streaming_s`` = R + max(E_total, J_total) + U + S and
``bound_off_policy_s`` = the largest single stage (both off-policy rows: ``off_policy_1`` with the actor's
behaviour log-probs and ``off_policy_1+rollout_lp`` with the engines'). ``summarise`` turns one setting's measured
runs into its JSON (``None`` for a mode not run, never an estimate); ``print_table`` prints the table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

ROLLOUT_LP = "off_policy_1+rollout_lp"
"""``off_policy_1`` with ``trainer.behaviour_log_probs: rollout`` (the engines' log-probs; update t beside rollout
t+1)."""
MODES = ("staged", "streaming", "off_policy_1", ROLLOUT_LP)
KEY = {"staged": "staged", "streaming": "streaming", "off_policy_1": "off_policy", ROLLOUT_LP: "off_policy_rollout_lp"}
"""Mode → the suffix of its JSON keys."""
OFF_POLICY = ("off_policy_1", ROLLOUT_LP)
"""The modes whose bound is ``bound_off_policy_s``."""
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
    for mode in OFF_POLICY:
        s[f"ratio_{KEY[mode]}_to_bound"] = _ratio(step[mode], setting.bound_off_policy_s)
    s["throughput_ratio_streaming_vs_staged"] = _ratio(step["staged"], step["streaming"])
    for mode in OFF_POLICY:
        s[f"throughput_ratio_{KEY[mode]}_vs_staged"] = _ratio(step["staged"], step[mode])
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
    g: dict[str, list[Any]] = {"streaming_le_1.10_bound": [s["ratio_streaming_to_bound"], "<=", GOAL_STREAMING]}
    for mode in OFF_POLICY:
        k = KEY[mode]
        g[f"{k}_le_1.15_bound"] = [s[f"ratio_{k}_to_bound"], "<=", GOAL_OFF_POLICY]
    if setting.name == "production":
        for mode in OFF_POLICY:
            k, busy = KEY[mode], s[f"busy_{KEY[mode]}"]
            g[f"{k}_ge_1.8x_staged"] = [s[f"throughput_ratio_{k}_vs_staged"], ">=", GOAL_THROUGHPUT]
            g[f"{k}_every_pool_ge_80pct_busy"] = [None if busy is None else min(busy.values()), ">=", GOAL_BUSY]
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
        f"{'setting':<14} {'mode':<23} {'step s':>7} {'bound s':>8} {'ratio':>6} {'thr×':>6}  "
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
            ROLLOUT_LP: s["bound_off_policy_s"],
        }
        for mode in MODES:
            k = KEY[mode]
            step = s[f"step_s_{k}"]
            busy = s[f"busy_{k}"]
            if step is None:
                why = s["unavailable"].get(mode, "not run")
                print(f"{'':<14} {mode:<23} {'—':>7} {bounds[mode]:>8.2f}  unavailable: {why}")
                continue
            thr = s["step_s_staged"] / step if s["step_s_staged"] else None
            b = [fmt(busy[p]) for p in POOLS]
            ovl = s[f"overlap_s_{k}"]
            print(
                f"{'':<14} {mode:<23} {step:>7.2f} {bounds[mode]:>8.2f} {step / bounds[mode]:>6.2f} {fmt(thr):>6}  "
                f"{b[0]:>10} {b[1]:>5} {b[2]:>5} {b[3]:>5}  {fmt(ovl['rollout+editor']):>7} "
                f"{fmt(ovl['editor+judge']):>5}  {s[f'staleness_{k}']}"
            )
        ideal = s["busy_ideal_off_policy"]
        print(
            f"{'':<14} {'(ideal, off)':<23} {'':>7} {'':>8} {'':>6} {'':>6}  "
            + " ".join(f"{fmt(ideal[p]):>{w}}" for p, w in zip(POOLS, (10, 5, 5, 5), strict=True))
        )
        for goal, (value, op, target) in s["goal_values"].items():
            ok = s["goals"][goal]
            verdict = "PASS" if ok else "FAIL" if ok is False else "not measured (mode unavailable)"
            print(f"{'':<14} goal {goal}: {fmt(value)} {op} {target:g}  {verdict}")
