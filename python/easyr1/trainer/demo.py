"""``easyr1 demo``: the whole loop on a laptop CPU — tiny models, sandbox data, SFT warm start, then GRPO.

Everything is built locally (no GPU, no network): a tiny random-weight Qwen2.5-VL policy, the sandbox world's
scenes, editor and judge. Re-running with the same ``--out`` reuses what is already there and resumes GRPO from
its newest complete checkpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from easyr1.config import DIMENSIONS, EasyR1Config

if TYPE_CHECKING:
    from easyr1.models.tiny import TinyPolicySpec

logger = logging.getLogger(__name__)

VISION_PRETRAIN_RECORD = "vision_pretrain.json"
"""File next to a tiny policy's weights: the :class:`~easyr1.sandbox.vision_pretrain.VisionPretrainReport` of its
vision tower's pretraining (absent when it had none)."""


def preset_path() -> Path:
    return Path(str(resources.files("easyr1") / "presets" / "sandbox.yaml"))


def demo_overrides(out: Path, steps: int | None, seed: int | None) -> list[str]:
    """Point the preset's paths at ``out`` and apply ``--steps``/``--seed``."""
    items = [
        f"data.train_files={out / 'data' / 'train'}",
        f"data.val_files={out / 'data' / 'val'}",
        f"worker.actor.model.model_path={out / 'tiny' / 'policy'}",
        f"trainer.output_dir={out}",
        f"sft.output_dir={out / 'sft'}",
    ]
    if steps is not None:
        items.append(f"trainer.max_steps={steps}")
    if seed is not None:
        items += [
            f"data.seed={seed}",
            f"sandbox.seed={seed}",
            f"trainer.seed={seed}",
            f"worker.rollout.seed={seed}",
            f"worker.actor.seed={seed}",
        ]
    return items


def prepare(cfg: EasyR1Config, out: Path, seed: int) -> dict[str, float]:
    """Build the tiny policy and the sandbox data when missing; returns reference rewards of the data."""
    from easyr1.sandbox.generator import write_sandbox_splits

    policy = Path(cfg.worker.actor.model.model_path)
    if not (policy / "config.json").is_file():
        build_sandbox_policy(cfg, policy, seed)
    data = Path(cfg.data.train_files).parent
    if not any(Path(cfg.data.train_files).glob("*.parquet")):
        logger.info("writing sandbox data to %s", data)
        write_sandbox_splits(data, cfg.sandbox)
    return reference_rewards(cfg)


def build_sandbox_policy(cfg: EasyR1Config, policy: Path, seed: int, spec: TinyPolicySpec | None = None) -> Path:
    """Build the tiny policy into ``policy`` (``spec`` a ``TinyPolicySpec``; default the sandbox's, or vLLM's
    for a vLLM rollout), then give its vision tower ``sandbox.vision_pretrain_steps`` steps of pretraining on
    rendered scenes (none by default)."""
    from easyr1.data.images import ImageOptions
    from easyr1.models.families import DEFAULT_TINY_FAMILY
    from easyr1.models.tiny import SANDBOX_POLICY_SPEC, build_tiny_policy

    family = cfg.worker.actor.model.model_family
    family = DEFAULT_TINY_FAMILY if family == "auto" else family
    logger.info("building the tiny %s policy in %s", family, policy)
    if spec is None:
        spec = SANDBOX_POLICY_SPEC
        if cfg.worker.rollout.name == "vllm":  # vLLM's CPU attention needs a head size of 32 or more
            from easyr1.rollout.vllm_engine import VLLM_TINY_SPEC

            spec = VLLM_TINY_SPEC
    build_tiny_policy(policy, seed=seed, spec=spec, family=family)
    if cfg.sandbox.vision_pretrain_steps:
        from easyr1.sandbox.vision_pretrain import pretrain_vision_tower

        report = pretrain_vision_tower(
            policy,
            cfg.sandbox.vision_pretrain_steps,
            seed=cfg.sandbox.seed,
            image_size=cfg.sandbox.image_size,
            image_options=ImageOptions(
                min_pixels=cfg.data.min_pixels, max_pixels=cfg.data.max_pixels, max_long_side=cfg.data.max_long_side
            ),
        )
        (policy / VISION_PRETRAIN_RECORD).write_text(json.dumps(asdict(report), indent=1))
    return policy


def vision_pretraining_of(policy: Path) -> dict | None:
    """What :func:`build_sandbox_policy` recorded about the vision pretraining of ``policy`` (``None``: none)."""
    record = policy / VISION_PRETRAIN_RECORD
    return json.loads(record.read_text()) if record.is_file() else None


def reference_rewards(cfg: EasyR1Config, rows: int = 64) -> dict[str, float]:
    """Mean sandbox judge score (5 dims) of doing nothing vs of the demonstrations, on validation rows."""
    import pyarrow.parquet as pq

    from easyr1.sandbox.answers import score_answer, score_preliminary

    folder = Path(cfg.data.val_files or cfg.data.train_files)
    records = []
    for path in sorted(folder.glob("*.parquet")):
        records.extend(pq.read_table(path, columns=["scene_json", "demonstration"]).to_pylist())
        if len(records) >= rows:
            break
    records = records[:rows]
    if not records:
        return {}
    nothing = [score_preliminary(r["scene_json"]).mean for r in records]
    demo = [score_answer(r["scene_json"], r["demonstration"]).mean for r in records]
    return {"do_nothing": sum(nothing) / len(nothing), "demonstration": sum(demo) / len(demo)}


def final_model(out: Path) -> Path:
    """A Hugging Face folder of the run's newest checkpoint (exported once into ``out/final``)."""
    from easyr1.actor.checkpoint import export_checkpoint

    final = out / "final"
    steps = sorted(out.glob("checkpoints/global_step_*"), key=lambda p: int(p.name.rsplit("_", 1)[1]))
    if not steps:
        raise FileNotFoundError(f"{out}: no checkpoint to evaluate")
    marker = final / "FROM"
    if (final / "config.json").is_file() and marker.is_file() and marker.read_text() == steps[-1].name:
        return final
    export_checkpoint(steps[-1], final)
    marker.write_text(steps[-1].name)
    return final


def held_out_outcome(cfg: EasyR1Config, out: Path, sft_dir: Path, show: int = 4) -> tuple[dict[str, float], list]:
    """Greedy answers of the SFT start and of the GRPO result on the validation rows: judge mean and repair rate
    before/after, and up to ``show`` rows GRPO repaired and SFT did not (with rendered images, for the report)."""
    from easyr1.sandbox.evaluate import evaluate_policy, load_rows, render_final, repaired_by_second
    from easyr1.sandbox.render import render_scene
    from easyr1.sandbox.scene import SceneDoc

    from .report import RepairedRow

    rows = load_rows(cfg, "val")
    before = evaluate_policy(sft_dir, cfg, rows)
    after = evaluate_policy(final_model(out), cfg, rows)
    b, a = before.summary(), after.summary()
    outcome = {
        "judge_before": b["judge_mean"],
        "judge_after": a["judge_mean"],
        "judge_gain": a["judge_mean"] - b["judge_mean"],
        "repair_before": b["repair_rate"],
        "repair_after": a["repair_rate"],
        "format_before": b["format"],
        "format_after": a["format"],
        "rows": a["rows"],
    }
    folder = out / "report_files"
    folder.mkdir(parents=True, exist_ok=True)
    by_id = {r.id: r for r in rows}
    shown = []
    for i, (sft_row, grpo_row) in enumerate(repaired_by_second(before, after)[:show]):
        prelim = folder / f"repaired{i}_preliminary.png"
        render_scene(SceneDoc.from_json(by_id[sft_row.id].metadata["scene_json"]).scene, 128).save(prelim)
        shown.append(
            RepairedRow(
                id=sft_row.id,
                instruction=sft_row.instruction,
                defects=sft_row.defects,
                sft_answer=sft_row.answer,
                grpo_answer=grpo_row.answer,
                sft_judge=sft_row.judge_mean,
                grpo_judge=grpo_row.judge_mean,
                images={
                    "preliminary": prelim,
                    "sft": render_final(sft_row, folder / f"repaired{i}_sft.png"),
                    "grpo": render_final(grpo_row, folder / f"repaired{i}_grpo.png"),
                },
            )
        )
    return outcome, shown


def demo_command(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from easyr1.pools import WorkerLost

    from .entry import load_or_report, run_training
    from .grpo import StageFailure
    from .report import read_metrics, summarize, write_report
    from .sft import run_sft

    console = Console(stderr=True)
    out = Path(args.out).resolve()
    base = args.config or preset_path()
    cfg = load_or_report(console, "demo", base, [*demo_overrides(out, args.steps, args.seed), *args.overrides])
    if cfg is None:
        return 2
    seed = args.seed if args.seed is not None else cfg.sandbox.seed
    times: dict[str, float] = {}
    start = time.perf_counter()
    console.rule("easyr1 demo: tiny Qwen2.5-VL policy + sandbox world, on CPU")
    t0 = time.perf_counter()
    references = prepare(cfg, out, seed)
    times["prepare"] = time.perf_counter() - t0
    policy_dir = Path(cfg.worker.actor.model.model_path)

    sft_dir = Path(cfg.sft.output_dir or out / "sft")
    t0 = time.perf_counter()
    if not (sft_dir / "config.json").is_file():
        if cfg.sandbox.sft_teacher == "text_only" and not cfg.sft.demonstrations:
            from easyr1.sandbox.generator import write_sft_demonstrations

            cfg.sft.demonstrations = str(
                write_sft_demonstrations(out / "data" / "sft_text_only.jsonl", cfg.sandbox, mode="text_only")
            )
        run_sft(cfg, console=console)
    else:
        logger.info("reusing the SFT warm start in %s", sft_dir)
    times["sft"] = time.perf_counter() - t0
    cfg.worker.actor.model.model_path = str(sft_dir)

    t0 = time.perf_counter()
    try:
        run_training(cfg, console=console)
    except (StageFailure, WorkerLost) as exc:
        console.print(f"easyr1 demo stopped: {exc}", style="red", markup=False)
        return 1
    times["grpo"] = time.perf_counter() - t0
    times["total"] = time.perf_counter() - start

    t0 = time.perf_counter()
    outcome, repaired = held_out_outcome(cfg, out, sft_dir)
    times["evaluate"] = time.perf_counter() - t0
    rows = read_metrics(out / "metrics.jsonl")
    summary = summarize(rows)
    report = write_report(out, summary, rows, outcome=outcome, repaired=repaired)
    (out / "demo_summary.json").write_text(
        json.dumps(
            {
                "times_s": times,
                "references": references,
                "vision_pretraining": vision_pretraining_of(policy_dir),
                "held_out": outcome,
                **summary.to_dict(),
            },
            indent=1,
        )
    )

    table = Table(title=f"reward over {summary.steps} GRPO steps (0–10; first vs last 20 %)")
    table.add_column("metric")
    table.add_column("first", justify="right")
    table.add_column("last", justify="right")
    for key in ("reward/mean", *(f"reward/{d}" for d in DIMENSIONS), "reward/format"):
        first, last = summary.first.get(key, math.nan), summary.last.get(key, math.nan)
        table.add_row(key, f"{first:.2f}", f"{last:.2f}")
    console.print(table)
    stages = ", ".join(f"{k} {v:.2f}s" for k, v in summary.stage_seconds.items() if k != "step")
    console.print(f"time per step by stage: {stages}")
    if references:
        console.print(
            f"sandbox reference (mean of 5 judge dims on validation rows): doing nothing {references['do_nothing']:.2f}, "
            f"the demonstrations {references['demonstration']:.2f}"
        )
    pretrained = vision_pretraining_of(policy_dir)
    if pretrained:
        console.print(
            f"vision tower pretrained on rendered scenes: {pretrained['steps']} steps in {pretrained['seconds']:.0f}s, "
            f"held-out object-position accuracy {pretrained['held_out_position_accuracy']:.0%} (in prepare)"
        )
    console.print(
        f"wall time: prepare {times['prepare']:.0f}s, SFT {times['sft']:.0f}s, GRPO {times['grpo']:.0f}s, "
        f"held-out evaluation {times['evaluate']:.0f}s, total {times['total'] + times['evaluate']:.0f}s"
    )
    console.print(
        f"held-out validation ({outcome['rows']} rows, greedy): judge mean {outcome['judge_before']:.2f} before GRPO → "
        f"{outcome['judge_after']:.2f} after ({outcome['judge_gain']:+.2f}); repair rate "
        f"{outcome['repair_before']:.0%} → {outcome['repair_after']:.0%}; format {outcome['format_before']:.2f} → "
        f"{outcome['format_after']:.2f}",
        markup=False,
    )
    console.print(f"report: {report}\nmetrics: {out / 'metrics.jsonl'}\ncheckpoints: {out / 'checkpoints'}")
    return 0
