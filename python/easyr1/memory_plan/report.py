"""Verdicts per pool, what to change when a pool does not fit, and the ``easyr1 plan-memory`` command."""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .estimate import GIB, PoolEstimate, plan_actor, plan_editor, plan_rollout
from .shapes import ModelConfigUnavailable, editor_shape, policy_shape

logger = logging.getLogger(__name__)

DEFAULT_GPU_GIB = 79.1
"""Memory of an 80 GB H100/A100 as PyTorch reports it (``total_memory``; OOM messages say "79.1x GiB")."""

TIGHT_FRACTION = 0.05
"""A pool whose headroom is below this fraction of the GPU is "tight": allocator fragmentation alone can eat it."""


@dataclass
class Verdict:
    """One pool's estimate judged against the GPU."""

    estimate: PoolEstimate
    capacity_bytes: int
    status: str
    """``fits``, ``tight`` or ``does not fit``."""
    reason: str
    suggestions: list[str] = field(default_factory=list)

    @property
    def headroom_bytes(self) -> int:
        used = self.estimate.budget_bytes or self.estimate.peak_bytes
        return self.capacity_bytes - used


def judge(estimate: PoolEstimate, capacity: int) -> tuple[str, str]:
    """``(status, reason)`` of one pool."""
    if estimate.pool == "rollout" and estimate.budget_bytes is not None:
        facts = estimate.facts
        phase = estimate.phases["generate"]
        fixed = sum(v for k, v in phase.items() if k != "KV cache")
        if fixed >= estimate.budget_bytes:
            return "does not fit", "weights and activations exceed gpu_memory_utilization: no room for a KV cache"
        if facts["kv_tokens"] < facts["max_model_len"]:
            return "does not fit", (
                f"KV cache holds {facts['kv_tokens']:,} tokens < max_model_len {facts['max_model_len']:,} "
                "(vLLM refuses to start)"
            )
        if facts["kv_tokens"] < facts["seq_tokens"] * facts["demand"]:
            return "tight", (
                f"KV cache runs {facts['kv_tokens'] // facts['seq_tokens']} of the {facts['demand']} sequences "
                "of a step at once at full length (the rest wait: slower, not an error)"
            )
        return "fits", f"KV cache holds all {facts['demand']} sequences of a step at full length"
    headroom = capacity - estimate.peak_bytes
    where = f"peak in '{estimate.peak_phase}'"
    if headroom < 0:
        return "does not fit", f"{where} exceeds the GPU by {-headroom / GIB:.1f} GiB"
    if headroom < TIGHT_FRACTION * capacity:
        return "tight", f"{where} leaves {headroom / GIB:.1f} GiB (< {TIGHT_FRACTION:.0%} of the GPU)"
    return "fits", f"{where} leaves {headroom / GIB:.1f} GiB"


def set_key(cfg: Any, dotted: str, value: Any) -> Any:
    """A deep copy of ``cfg`` with ``dotted`` set to ``value``."""
    out = copy.deepcopy(cfg)
    *parents, last = dotted.split(".")
    node = out
    for name in parents:
        node = getattr(node, name)
    setattr(node, last, value)
    return out


def candidates(pool: str, cfg: Any) -> list[tuple[str, Any]]:
    """Changes worth trying for a pool that does not fit, in order of preference (cheapest in speed first)."""
    w = cfg.worker
    if pool == "actor":
        a = w.actor
        out: list[tuple[str, Any]] = []
        if not a.model.enable_gradient_checkpointing:
            out.append(("worker.actor.model.enable_gradient_checkpointing", True))
        if a.micro_batch_size_per_device_for_update > 1:
            out.append(("worker.actor.micro_batch_size_per_device_for_update", 1))
        if a.micro_batch_size_per_device_for_experience > 1:
            out.append(
                (
                    "worker.actor.micro_batch_size_per_device_for_experience",
                    max(1, a.micro_batch_size_per_device_for_experience // 4),
                )
            )
        if a.optim.strategy != "adamw_bf16":
            out.append(("worker.actor.optim.strategy", "adamw_bf16"))
        out.append(("worker.actor.num_workers", 2 * a.num_workers))
        if not a.fsdp.enable_cpu_offload:
            out.append(("worker.actor.fsdp.enable_cpu_offload", True))
        return out
    if pool == "rollout":
        r = w.rollout
        out = []
        if r.gpu_memory_utilization < 0.85:
            out.append(("worker.rollout.gpu_memory_utilization", 0.85))
        out.append(("worker.rollout.tensor_parallel_size", 2 * r.tensor_parallel_size))
        if r.max_num_batched_tokens > 8192:
            out.append(("worker.rollout.max_num_batched_tokens", 8192))
        return out
    e = w.image_edit
    out = []
    if e.batch_size > 1:
        out.append(("worker.image_edit.batch_size", max(1, e.batch_size // 2)))
    if not e.enable_model_cpu_offload:
        out.append(("worker.image_edit.enable_model_cpu_offload", True))
    return out


@dataclass
class MemoryPlan:
    gpu_bytes: int
    verdicts: list[Verdict]
    skipped: list[str]

    @property
    def fits(self) -> bool:
        return all(v.status != "does not fit" for v in self.verdicts)


def plan(
    cfg: Any,
    *,
    policy_model: str | None = None,
    editor_model: str | None = None,
    gpu_gib: float = DEFAULT_GPU_GIB,
    prompt_len: int | None = None,
    suggest: bool = True,
) -> MemoryPlan:
    """Estimate every pool of ``cfg`` that runs on GPUs; pools whose model config cannot be read are skipped."""
    gpu = int(gpu_gib * GIB)
    skipped: list[str] = []
    estimators: list[tuple[str, Callable[[Any], PoolEstimate]]] = []
    try:
        policy = policy_shape(policy_model or cfg.worker.actor.model.model_path)
    except ModelConfigUnavailable as exc:
        skipped.append(f"actor, rollout: {exc}")
    else:
        estimators.append(("actor", lambda c: plan_actor(c, policy, prompt_len=prompt_len)))
        estimators.append(("rollout", lambda c: plan_rollout(c, policy, gpu_bytes=gpu, prompt_len=prompt_len)))
    if cfg.worker.image_edit.backend == "qwen_image_edit":
        try:
            editor = editor_shape(editor_model or cfg.worker.image_edit.model_path)
        except ModelConfigUnavailable as exc:
            skipped.append(f"editor: {exc}")
        else:
            estimators.append(("editor", lambda c: plan_editor(c, editor)))
    verdicts = []
    for pool, estimate in estimators:
        est = estimate(cfg)
        status, reason = judge(est, gpu)
        verdict = Verdict(est, gpu, status, reason)
        if suggest and status != "fits":
            verdict.suggestions = suggestions(pool, cfg, estimate, gpu)
        verdicts.append(verdict)
    return MemoryPlan(gpu, verdicts, skipped)


def suggestions(pool: str, cfg: Any, estimate: Callable[[Any], PoolEstimate], gpu: int) -> list[str]:
    """Single changes that make the pool fit; else the cumulative set of all candidates, if that fits."""
    out = []
    tried = cfg
    for key, value in candidates(pool, cfg):
        alone = estimate(set_key(cfg, key, value))
        status, reason = judge(alone, gpu)
        if status == "fits":
            out.append(f"{key}={value}: {reason}")
        tried = set_key(tried, key, value)
    if not out and candidates(pool, cfg):
        status, reason = judge(estimate(tried), gpu)
        keys = " ".join(f"{k}={v}" for k, v in candidates(pool, cfg))
        out.append(f"{keys}: {status}, {reason}" if status != "does not fit" else f"even {keys}: {reason}")
    return out


def format_plan(result: MemoryPlan, *, detail: bool = True) -> Iterable[str]:
    yield f"memory plan, per GPU of {result.gpu_bytes / GIB:.1f} GiB (from model configs; see docs/memory.md):"
    for v in result.verdicts:
        est = v.estimate
        used = est.budget_bytes or est.peak_bytes
        yield (
            f"  {est.pool:8s} {v.status.upper():13s} {used / GIB:5.1f} GiB on each of {est.gpus} GPU(s), headroom "
            f"{v.headroom_bytes / GIB:.1f} GiB — {v.reason}"
        )
        if detail:
            for note in est.notes:
                yield f"      {note}"
            yield f"      {est.peak_phase}:"
            for name, value in est.phases[est.peak_phase].items():
                if value:
                    yield f"        {name:42s} {value / GIB:7.2f} GiB"
            if est.host:
                yield "      host memory per process:"
            for name, value in est.host.items():
                yield f"        {name:42s} {value / GIB:7.2f} GiB"
        for s in v.suggestions:
            yield f"      to fit: {s}"
    for s in result.skipped:
        yield f"  skipped  {s}"


def as_json(result: MemoryPlan) -> dict[str, Any]:
    return {
        "gpu_gib": result.gpu_bytes / GIB,
        "fits": result.fits,
        "pools": {
            v.estimate.pool: {
                "status": v.status,
                "reason": v.reason,
                "gib": (v.estimate.budget_bytes or v.estimate.peak_bytes) / GIB,
                "headroom_gib": v.headroom_bytes / GIB,
                "peak_phase": v.estimate.peak_phase,
                "phases": {p: {k: c / GIB for k, c in comp.items()} for p, comp in v.estimate.phases.items()},
                "host_gib": {k: c / GIB for k, c in v.estimate.host.items()},
                "notes": v.estimate.notes,
                "suggestions": v.suggestions,
            }
            for v in result.verdicts
        },
        "skipped": result.skipped,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gpu-memory-gib", type=float, default=DEFAULT_GPU_GIB, help="memory of one GPU")
    parser.add_argument("--policy-model", default=None, help="plan with this folder or hub id's config.json")
    parser.add_argument("--editor-model", default=None, help="plan with this diffusers folder or hub id")
    parser.add_argument("--prompt-tokens", type=int, default=None, help="prompt length to plan for")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")


def plan_memory_command(args: argparse.Namespace) -> int:
    from easyr1.config import ConfigValidationError, load_config

    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigValidationError as exc:
        print(f"easyr1: {exc}", file=sys.stderr)
        return 2
    try:
        result = plan(
            cfg,
            policy_model=args.policy_model,
            editor_model=args.editor_model,
            gpu_gib=args.gpu_memory_gib,
            prompt_len=args.prompt_tokens,
        )
    except (OSError, KeyError, ValueError) as exc:
        print(f"easyr1 plan-memory: cannot read a model config: {exc!r}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(as_json(result), indent=2))
    else:
        print("\n".join(format_plan(result)))
    if not result.verdicts:
        return 1
    return 0 if result.fits else 1


def summary_lines(cfg: Any) -> list[str]:
    """Short lines for ``validate-config``: one per pool whose model config is readable."""
    placements = (cfg.cluster.actor, cfg.cluster.rollout, cfg.cluster.editor)
    if all(p.num_gpus_per_worker == 0 for p in placements):
        return ["memory plan: not applicable (no pool asks for GPUs in cluster.*.num_gpus_per_worker)"]
    try:
        result = plan(cfg, suggest=False)
    except (OSError, KeyError, ValueError) as exc:
        return [f"memory plan: not available ({exc})"]
    if not result.verdicts:
        return [
            "memory plan: skipped, no model config readable here (plan with published configs: easyr1 plan-memory "
            "CONFIG --policy-model Qwen/Qwen2.5-VL-7B-Instruct --editor-model Qwen/Qwen-Image-Edit)"
        ]
    return list(format_plan(result, detail=False))
