"""Does GRPO teach the repair? Held-out judge gains of SFT + GRPO against SFT alone, with two controls.

Per seed, from the same start (the same sandbox data, tiny policy and SFT warm start, made once by the first arm):

* (a) ``sft``      — the SFT warm start alone;
* (b) ``grpo``     — SFT + GRPO (``easyr1 demo`` with the packaged preset, or ``--config``);
* (c) ``shuffled`` — the same GRPO run with the judge's scores shuffled within each training batch
  (``easyr1.sandbox.controls``: ``$EASYR1_SANDBOX_SHUFFLE_JUDGE``);
* (d) ``blind``    — the same GRPO run on training rows whose images are blanked (grey).

Every arm is evaluated the same way, in this process, on the held-out validation split (disjoint scenes, never
trained on), greedy: mean of the five judge dimensions (0–10), format (0–5), repair rate (share of rows whose final
scene has none of its injected defects left), repair rate per defect kind, and for the image-only kinds the answers
counted by needed and said direction (a policy that ignores the image says one side for all). Prints a table, then
one JSON line with ``judge_gain_vs_sft``, ``judge_gain_shuffled``, ``judge_gain_blind``, ``repair_rate_sft``,
``repair_rate_grpo``, ``wall_s``, ``peak_rss_mb`` (means over seeds, and per seed). ``--plot`` draws the validation judge mean per GRPO
step (the trainer's own validation) of every seed and arm.

    python benchmarks/learning.py --seeds 0 1 2 [--out runs/learning] [--plot docs/images/learning_curve.png]

``--spec key=value`` (repeatable) and ``--family`` build the tiny policy from ``SANDBOX_POLICY_SPEC`` with those
changes (``benchmarks/vision_probe.py`` is the cheaper check of a policy change before a run like this).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from statistics import mean

import psutil

DIMS = ("physical_geometric", "environment_context", "cultural_social", "logical_causal", "target_attribution")
ARMS = ("grpo", "shuffled", "blind")
SHARED = ("data", "tiny", "sft")
"""Folders the control arms copy from the ``grpo`` arm (the same start)."""


def tree_rss_mb(root: psutil.Process) -> float:
    total = 0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += proc.memory_info().rss
    return total / 2**20


def run_demo(run_dir: Path, seed: int, extra: list[str], env: dict[str, str]) -> dict:
    """``easyr1 demo`` in a subprocess; wall time and peak RSS of its process tree."""
    cmd = [sys.executable, "-m", "easyr1", "demo", "--out", str(run_dir), "--seed", str(seed), *extra]
    start = time.perf_counter()
    peak = 0.0
    stop = threading.Event()
    with open(run_dir.with_suffix(".log"), "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
        root = psutil.Process(proc.pid)

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, tree_rss_mb(root))
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rc = proc.wait()
        stop.set()
        sampler.join()
    return {"rc": rc, "wall_s": round(time.perf_counter() - start, 1), "peak_rss_mb": round(peak, 1)}


def val_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(step, mean of the five validation judge dimensions) from the trainer's own validation rows."""
    curve = []
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return curve
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if all(f"val/reward/{d}" in row for d in DIMS):
            values = [row[f"val/reward/{d}"] for d in DIMS]
            if all(v is not None and math.isfinite(v) for v in values):
                curve.append((int(row["step"]), mean(values)))
    return curve


def final_model(run_dir: Path) -> Path:
    """A Hugging Face folder of the run's newest checkpoint (exported once into ``run_dir/final``)."""
    from easyr1.actor.checkpoint import export_checkpoint

    out = run_dir / "final"
    if (out / "config.json").is_file():
        return out
    steps = sorted(run_dir.glob("checkpoints/global_step_*"), key=lambda p: int(p.name.rsplit("_", 1)[1]))
    if not steps:
        raise FileNotFoundError(f"{run_dir}: no checkpoint")
    return export_checkpoint(steps[-1], out)


DIRECTION_WORDS = {
    "misplaced_object": {"left": "left", "right": "right"},
    "wrong_exposure": {"brighten": "brighter", "lighten": "brighter", "darken": "darker", "dim": "darker"},
}
"""Words of an image-only repair's direction in an answer, by defect kind (``easyr1.sandbox.image_defects``)."""
NEEDED = {
    "misplaced_object": {"left": "right", "right": "left"},  # the object stands left of the middle: move it right
    "wrong_exposure": {"dark": "brighter", "bright": "darker"},
}
"""The direction the repair needs, from the clause's ``off`` (which way the preliminary edit went wrong)."""


def direction_table(rows: list, results: list) -> dict[str, dict[str, int]]:
    """Per image-only defect kind: answers counted as ``"needed->said"`` (``said``: the direction words of the
    answer's Re_edit part, ``none`` if it names no direction). A policy that ignores the image says the same for
    every needed direction; one that reads it puts its counts on ``left->left`` and ``right->right``."""
    table: dict[str, dict[str, int]] = {}
    for row, res in zip(rows, results, strict=True):
        intent = json.loads(row.metadata["scene_json"]).get("intent", [])
        for clause in intent:
            kind = {"center": "misplaced_object", "exposure": "wrong_exposure"}.get(clause.get("kind"))
            if kind is None or kind not in res.defects:
                continue
            needed = NEEDED[kind][clause["args"]["off"]]
            tail = res.answer.split("<Re_edit>", 1)[-1].lower()
            words = DIRECTION_WORDS[kind]
            said = sorted({v for w, v in words.items() if re.search(rf"\b{w}\b", tail)}) or ["none"]
            key = f"{needed}->{'+'.join(said)}"
            table.setdefault(kind, {})[key] = table.setdefault(kind, {}).get(key, 0) + 1
    return {k: dict(sorted(v.items())) for k, v in table.items()}


def evaluate(model: Path, run_dir: Path) -> dict:
    from easyr1.config import load_config
    from easyr1.sandbox.evaluate import evaluate_policy, load_rows

    cfg = load_config(run_dir / "config.yaml")
    rows = load_rows(cfg, "val")
    result = evaluate_policy(model, cfg, rows)
    summary = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.summary().items()}
    summary["directions"] = direction_table(rows, result.rows)
    return summary


def parse_spec(items: list[str]) -> dict:
    """``key=value`` changes of :class:`~easyr1.models.tiny.TinyPolicySpec`: integers, floats, ``a,b,c`` tuples."""
    from dataclasses import fields

    from easyr1.models.tiny import TinyPolicySpec

    names = {f.name for f in fields(TinyPolicySpec)}
    out: dict = {}
    for item in items:
        key, _, raw = item.partition("=")
        if key not in names:
            raise SystemExit(
                f"--spec {item!r}: TinyPolicySpec has no field {key!r} (fields: {', '.join(sorted(names))})"
            )
        if "," in raw:
            out[key] = tuple(json.loads(v) for v in raw.split(","))
        else:
            out[key] = None if raw.lower() in ("none", "null") else json.loads(raw)
    return out


def prebuild_policy(run_dir: Path, seed: int, spec_changes: dict, family: str | None, extra: list[str]) -> None:
    """Build the arm's tiny policy from ``SANDBOX_POLICY_SPEC`` with ``spec_changes`` before ``easyr1 demo`` runs
    (the demo keeps a policy that is already there), through the demo's own builder with the demo's config
    (``extra``: its ``--config`` and overrides), so ``sandbox.vision_pretrain_steps`` applies as in the demo."""
    from dataclasses import replace

    from easyr1.config import load_config
    from easyr1.models.tiny import SANDBOX_POLICY_SPEC
    from easyr1.trainer.demo import build_sandbox_policy, demo_overrides, preset_path

    policy = run_dir / "tiny" / "policy"
    if (policy / "config.json").is_file():
        return
    base, overrides = (extra[1], extra[2:]) if extra[:1] == ["--config"] else (preset_path(), extra)
    cfg = load_config(base, [*demo_overrides(run_dir, None, seed), *overrides])
    logging.info("tiny policy %s %s in %s", family or cfg.worker.actor.model.model_family, spec_changes, policy)
    build_sandbox_policy(cfg, policy, seed, spec=replace(SANDBOX_POLICY_SPEC, **spec_changes))


def run_seed(
    seed: int, out: Path, extra: list[str], arms: list[str], spec_changes: dict | None = None, family: str | None = None
) -> dict:
    base = out / f"seed{seed}"
    base.mkdir(parents=True, exist_ok=True)
    result: dict = {"seed": seed, "arms": {}}
    first = base / "grpo"
    if spec_changes or family:
        prebuild_policy(first, seed, spec_changes or {}, family, extra)
    for arm in arms:
        run_dir = base / arm
        env: dict[str, str] = {}
        if arm != "grpo":
            if not (first / "sft" / "config.json").is_file():
                raise RuntimeError(f"{arm}: the grpo arm must run first (it makes the shared start)")
            for name in SHARED:
                if not (run_dir / name).exists():
                    shutil.copytree(first / name, run_dir / name)
        if arm == "shuffled":
            env["EASYR1_SANDBOX_SHUFFLE_JUDGE"] = str(seed)
        if arm == "blind" and not (run_dir / "BLANKED").exists():
            from easyr1.sandbox.controls import blank_images_in_folder

            blank_images_in_folder(run_dir / "data" / "train")
            (run_dir / "BLANKED").write_text("training images blanked\n")
        logging.info("seed %d: arm %s", seed, arm)
        run_dir.mkdir(parents=True, exist_ok=True)
        info = run_demo(run_dir, seed, extra, env)
        if info["rc"] == 0:
            info["eval"] = evaluate(final_model(run_dir), run_dir)
        info["curve"] = val_curve(run_dir)
        result["arms"][arm] = info
    result["arms"]["sft"] = {"eval": evaluate(first / "sft", first)}
    ran = [a for a in result["arms"].values() if "wall_s" in a]
    result["wall_s"] = round(sum(a["wall_s"] for a in ran), 1)
    result["peak_rss_mb"] = round(max(a["peak_rss_mb"] for a in ran), 1)
    sft = result["arms"]["sft"]["eval"]
    for arm in arms:
        ev = result["arms"][arm].get("eval")
        result[f"judge_gain_{arm}"] = round(ev["judge_mean"] - sft["judge_mean"], 4) if ev else None
    result["repair_rate_sft"] = sft["repair_rate"]
    grpo_eval = result["arms"].get("grpo", {}).get("eval")
    result["repair_rate_grpo"] = grpo_eval["repair_rate"] if grpo_eval else None
    return result


def plot_curves(results: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib (pip install matplotlib)") from None
    colors = {"grpo": "tab:blue", "shuffled": "tab:orange", "blind": "tab:green"}
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for r in results:
        for arm, info in r["arms"].items():
            curve = info.get("curve")
            if not curve:
                continue
            xs, ys = zip(*curve, strict=True)
            label = f"{arm} (seed {r['seed']})"
            ax.plot(
                xs, ys, color=colors.get(arm, "grey"), alpha=0.5 + 0.5 / (1 + r["seed"]), marker="o", ms=3, label=label
            )
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("validation judge mean (0–10, greedy)")
    ax.set_title("Held-out judge mean per GRPO step: GRPO vs controls")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def _mean(values: list) -> float | None:
    vals = [v for v in values if v is not None]
    return round(mean(vals), 4) if vals else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/learning")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--config", default=None, help="YAML instead of the packaged sandbox preset")
    parser.add_argument("--plot", default=None, help="write the learning-curve PNG here")
    parser.add_argument(
        "--spec",
        action="append",
        default=[],
        help="a TinyPolicySpec change over SANDBOX_POLICY_SPEC for the tiny policy the first arm builds (repeatable)",
    )
    parser.add_argument("--family", default=None, help="tiny policy family (qwen2_5_vl, qwen3_vl)")
    parser.add_argument(
        "--from-results",
        action="store_true",
        help="run nothing: print the table, JSON line and plot from OUT/results.json (the seeds that finished)",
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides passed to easyr1 demo")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if "grpo" not in args.arms:
        args.arms.insert(0, "grpo")
    extra = (["--config", args.config] if args.config else []) + [
        "trainer.logger=[console,file]",
        *([f"worker.actor.model.model_family={args.family}"] if args.family else []),
        *args.overrides,
    ]
    spec_changes = parse_spec(args.spec)
    results_path = out / "results.json"
    if args.from_results:
        results = [r for r in json.loads(results_path.read_text()) if r["seed"] in args.seeds]
        args.arms = [a for a in ARMS if any(a in r["arms"] for r in results)]
    else:
        results = []
        for seed in args.seeds:
            results.append(run_seed(seed, out, extra, args.arms, spec_changes, args.family))
            results_path.write_text(json.dumps(results, indent=1))
    print(
        f"{'seed':>4} {'arm':>9} {'rc':>3} {'wall s':>7} {'RSS MB':>7} {'judge':>6} {'Δ vs sft':>8} {'format':>6} "
        f"{'repair':>6}  repair by defect"
    )
    for r in results:
        sft_judge = r["arms"]["sft"]["eval"]["judge_mean"]
        for arm in ("sft", *args.arms):
            info = r["arms"].get(arm, {})
            ev = info.get("eval") or {}
            judge = ev.get("judge_mean", math.nan)
            kinds = " ".join(f"{k[:12]}={v:.2f}" for k, v in ev.get("repair_rate_by_defect", {}).items())
            print(
                f"{r['seed']:>4} {arm:>9} {info.get('rc', 0):>3} {info.get('wall_s', 0):>7.0f} "
                f"{info.get('peak_rss_mb', 0):>7.0f} {judge:>6.2f} {judge - sft_judge:>+8.2f} "
                f"{ev.get('format', math.nan):>6.2f} {ev.get('repair_rate', math.nan):>6.2f}  {kinds}"
            )
    print("answers by needed -> said direction (held-out, greedy):")
    for r in results:
        for arm in ("sft", *args.arms):
            dirs = (r["arms"].get(arm, {}).get("eval") or {}).get("directions") or {}
            text = "; ".join(f"{k}: " + " ".join(f"{c}={n}" for c, n in v.items()) for k, v in dirs.items())
            print(f"{r['seed']:>4} {arm:>9}  {text or '(not recorded)'}")
    keys = ("judge_gain_grpo", "judge_gain_shuffled", "judge_gain_blind", "repair_rate_sft", "repair_rate_grpo")
    names = {"judge_gain_grpo": "judge_gain_vs_sft"}
    per_seed = [
        {
            "seed": r["seed"],
            **{names.get(k, k): r.get(k) for k in keys},
            "wall_s": r["wall_s"],
            "peak_rss_mb": r["peak_rss_mb"],
        }
        for r in results
    ]
    summary = {names.get(k, k): _mean([r.get(k) for r in results]) for k in keys}
    summary["wall_s"] = _mean([r["wall_s"] for r in results])
    summary["peak_rss_mb"] = _mean([r["peak_rss_mb"] for r in results])
    gains = [s["judge_gain_vs_sft"] for s in per_seed]
    ok = all(
        g is not None
        and g >= 1.0
        and all(s.get(c) is not None and s[c] <= g / 3 for c in ("judge_gain_shuffled", "judge_gain_blind"))
        and s["repair_rate_grpo"] - s["repair_rate_sft"] >= 0.15
        and s["wall_s"] <= 1800
        and s["peak_rss_mb"] <= 8192
        for g, s in zip(gains, per_seed, strict=True)
    )
    if args.plot:
        plot_curves(results, Path(args.plot))
    print(json.dumps({"benchmark": "learning", **summary, "per_seed": per_seed, "goals_met": ok}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
