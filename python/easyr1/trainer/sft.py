"""``easyr1 sft CONFIG``: supervised warm start on demonstrations (cross-entropy on the response tokens).

Demonstrations come from the rows' ``demonstration`` column (the sandbox writes one per row) or from a JSONL file
``sft.demonstrations`` with ``{"id", "response"}`` lines joined to the training rows by id. A row without a
demonstration is an error naming the row (never skipped silently). The result is a Hugging Face folder that
``worker.actor.model.model_path`` can point at.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

from easyr1.config import EasyR1Config, OptimConfig

logger = logging.getLogger(__name__)


def _load_demonstrations(path: str | None) -> dict[str, str] | None:
    if path is None:
        return None
    demos: dict[str, str] = {}
    with open(path) as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                demos[str(record["id"])] = str(record["response"])
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{lineno}: a demonstration needs 'id' and 'response' ({exc})") from None
    return demos


def run_sft(cfg: EasyR1Config, *, console=None) -> Path:
    """Train ``worker.actor.model`` on demonstrations; returns the exported Hugging Face folder."""
    from easyr1.actor.batch import PolicyBatch, encode_responses
    from easyr1.actor.pool import ActorPool
    from easyr1.data import build_dataloader, build_policy_prompt
    from easyr1.models.loading import load_processor
    from easyr1.pools.placement import init_ray
    from easyr1.telemetry.loggers import JsonlLogger

    from .components import StepBatches, ray_temp_dir
    from .entry import progress_bar

    s = cfg.sft
    out = Path(s.output_dir or Path(cfg.trainer.output_dir) / "sft")
    model = cfg.worker.actor.model
    processor = load_processor(model.tokenizer_path or model.model_path, trust_remote_code=model.trust_remote_code)
    loader = build_dataloader(replace(cfg.data, rollout_batch_size=s.batch_size), "train", processor=processor)
    demos = _load_demonstrations(s.demonstrations)
    steps = max(1, len(loader)) * s.epochs
    if s.max_steps is not None:
        steps = min(steps, s.max_steps)
    optim = OptimConfig(lr=s.lr, weight_decay=0.0, lr_warmup_ratio=0.0, lr_scheduler_type="cosine", min_lr_ratio=0.1)
    ray_temp, remove_ray_temp = ray_temp_dir(Path(cfg.trainer.output_dir))
    started = init_ray(cfg.cluster, temp_dir=str(ray_temp))
    actor = None
    metrics_log = JsonlLogger(Path(cfg.trainer.output_dir) / "sft_metrics.jsonl")
    try:
        actor = ActorPool(cfg, total_steps=steps, optim=optim, with_reference=False)
        step = 0
        with progress_bar(console) as progress:
            task = progress.add_task("SFT warm start", total=steps)
            batches = StepBatches(loader)  # raises when an epoch yields no batch, instead of looping forever
            while step < steps:
                rows = batches.next_batch()
                texts = []
                for row in rows:
                    text = demos.get(row.id) if demos is not None else row.metadata.get("demonstration")
                    if not text:
                        raise ValueError(f"{row.origin or row.id}: no demonstration for row {row.id!r}")
                    texts.append(text)
                batch = PolicyBatch(
                    prompts=[build_policy_prompt(row, cfg.data.system_prompt, cfg.data.prompt_layout) for row in rows],
                    responses=encode_responses(processor.tokenizer, texts),
                )
                metrics = actor.sft_step(batch)
                step += 1
                metrics_log.log_metrics(step, {"step": step, **metrics})
                progress.update(
                    task, completed=step, description=f"SFT loss {metrics.get('sft/loss', float('nan')):.3f}"
                )
        actor.export_hf(str(out))
    finally:
        metrics_log.close()
        if actor is not None:
            actor.shutdown()
        if started:
            import ray

            ray.shutdown()
        if remove_ray_temp:
            shutil.rmtree(ray_temp, ignore_errors=True)
    logger.info("SFT warm start: %d steps, model written to %s", steps, out)
    return out


def sft_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .entry import load_or_report

    console = Console(stderr=True)
    cfg = load_or_report(console, "sft", args.config, args.overrides)
    if cfg is None:
        return 2
    try:
        out = run_sft(cfg, console=console)
    except (ValueError, RuntimeError) as exc:
        console.print(f"easyr1 sft: {exc}", style="red", markup=False)
        return 1
    console.print(f"SFT model written to {out}; train from it with worker.actor.model.model_path={out}")
    return 0
