"""LoRA into a real vLLM engine: merged-weight sync vs vLLM's own LoRA loading (issue 22).

Both modes run the production pools on a local Ray: a one-rank FSDP2 actor with LoRA (gloo, CPU) and one
``VLLMRolloutEngine`` (the vLLM CPU build in ``.venv-vllm``, or vLLM on a GPU), joined by the real weight-sync group.
Per mode: one full sync, then ``--syncs`` rounds of (PPO step, update sync, timed generation of a fixed batch); the
engine/actor log-prob probe after every sync. Reported per mode: update-sync bytes and seconds, generation seconds
per batch (the price of serving an adapter: LoRA kernels in every forward), the probe.

``merged`` (``worker.actor.lora.sync=merged``, what ``auto`` picks for vLLM) sends ``W + scaling · B A`` of every
adapted decoder layer; ``adapters`` sends the LoRA matrices only and the engine serves them as a ``LoRARequest``.
Prints a table, then one JSON line. Goal (issue 22): update-sync bytes ≤ 5 % of full fine-tuning's — the full
model's update bytes are printed for reference (what a full-FT update sync sends: every trainable tensor).

    python benchmarks/lora_vllm.py                   # ~8 M-parameter policy, 3 syncs per mode (~6 min on 2 cores)
    python benchmarks/lora_vllm.py --hidden 128 --syncs 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODES = {"merged": "LoRA, merged-weight sync", "adapters": "LoRA, adapters (vLLM LoRARequest)"}


def _config(args: argparse.Namespace, policy: Path, mode: str):
    from easyr1.config import EasyR1Config

    cfg = EasyR1Config()
    cfg.worker.actor.model.model_path = str(policy)
    cfg.worker.actor.model.enable_gradient_checkpointing = False
    cfg.worker.actor.model.freeze_vision_tower = True
    cfg.worker.actor.global_batch_size = 2
    cfg.worker.actor.micro_batch_size_per_device_for_update = 4
    cfg.worker.actor.micro_batch_size_per_device_for_experience = 8
    cfg.worker.actor.optim.lr = 1e-3
    cfg.worker.actor.lora.rank = args.rank
    cfg.worker.actor.lora.alpha = 2.0 * args.rank
    cfg.worker.actor.lora.sync = mode
    cfg.worker.rollout.name = "vllm"
    if args.engine_python:
        cfg.worker.rollout.engine_python = args.engine_python
    cfg.worker.rollout.n = args.n
    cfg.worker.rollout.response_length = args.max_tokens
    cfg.worker.rollout.max_model_len = 512
    cfg.worker.rollout.kv_cache_memory_gb = 0.5
    cfg.worker.rollout.sync_probe_tolerance = 1e-4
    cfg.data.max_response_length = args.max_tokens
    cfg.data.rollout_batch_size = args.prompts
    cfg.cluster.actor.num_cpus_per_worker = 0.5
    cfg.cluster.rollout.num_cpus_per_worker = 0.5
    cfg.cluster.rollout.num_gpus_per_worker = 0
    return cfg


def run_mode(args: argparse.Namespace, policy: Path, mode: str) -> dict:
    import torch

    from easyr1.actor.batch import PolicyBatch
    from easyr1.actor.pool import ActorPool
    from easyr1.core.types import SamplingParams
    from easyr1.rollout.pool import RolloutPool
    from easyr1.rollout.probe import probe_prompts

    cfg = _config(args, policy, mode)
    actor = ActorPool(cfg)
    rollout = RolloutPool(cfg, startup_timeout_s=600)
    try:
        full = rollout.sync_weights(actor)
        plan = rollout._plan
        prompts = probe_prompts(args.prompts)
        sampling = SamplingParams(n=args.n, max_tokens=args.max_tokens, seed=7)
        rollout.generate(prompts, sampling)  # warm-up: first-call compilation and caches
        update_bytes, update_s, generate_s, probes = [], [], [], [full["rollout/sync_probe_max_abs_diff"]]
        for step in range(args.syncs):
            outs = rollout.generate(prompts, sampling)
            batch = PolicyBatch([prompts[i // args.n] for i in range(len(outs))], [o.token_ids for o in outs])
            signs = torch.tensor([1.0 if (i + step) % 2 else -1.0 for i in range(len(outs))])
            batch = batch.with_fields(
                old_log_probs=actor.compute_log_probs(batch),
                ref_log_probs=actor.compute_ref_log_probs(batch),
                advantages=signs,
            )
            actor.update_policy(batch)
            metrics = rollout.sync_weights(actor)
            update_bytes.append(metrics["rollout/sync_bytes"])
            update_s.append(metrics["rollout/sync_time_s"])
            probes.append(metrics["rollout/sync_probe_max_abs_diff"])
            start = time.perf_counter()
            rollout.generate(prompts, sampling)
            generate_s.append(time.perf_counter() - start)
        trainable = {t.name for t in plan.tensors if not t.static}
        return {
            "mode": mode,
            "full_sync_bytes": plan.total_bytes,
            "update_sync_bytes": sum(update_bytes) / len(update_bytes),
            "update_sync_s": sum(update_s) / len(update_s),
            "generate_s": sum(generate_s) / len(generate_s),
            "tensors_per_update": len(trainable),
            "probe_max_abs_diff": max(probes),
        }
    finally:
        rollout.shutdown()
        actor.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--syncs", type=int, default=3, help="update syncs per mode (one PPO step before each)")
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank (alpha = 2 × rank)")
    parser.add_argument("--prompts", type=int, default=4, help="prompts per generation batch")
    parser.add_argument("--n", type=int, default=4, help="samples per prompt")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--engine-python", default=str(REPO / ".venv-vllm" / "bin" / "python"))
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    args = parser.parse_args()
    if not Path(args.engine_python).exists():
        sys.exit(f"no vLLM interpreter at {args.engine_python}: run `bash scripts/setup_vllm_cpu.sh` first")

    import ray

    from easyr1.models.tiny import TinyPolicySpec, build_tiny_policy

    work = Path(tempfile.mkdtemp(prefix="lora_vllm_"))
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    policy = build_tiny_policy(
        work / "policy",
        seed=0,
        spec=TinyPolicySpec(
            hidden_size=args.hidden,
            num_hidden_layers=args.layers,
            intermediate_size=3 * args.hidden,  # the policy of benchmarks/lora.py (head size 32)
            num_attention_heads=args.hidden // 32,
            num_key_value_heads=max(1, args.hidden // 64),
        ),
    )
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(work / "ray"), log_to_driver=False)
    started = time.perf_counter()
    try:
        results = [run_mode(args, policy, mode) for mode in args.modes]
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    rows = [
        ("full sync (bytes)", lambda r: f"{r['full_sync_bytes'] / 1e6:.2f} MB"),
        ("update sync", lambda r: f"{r['update_sync_bytes'] / 1e6:.3f} MB, {r['update_sync_s']:.3f} s"),
        ("update / full bytes", lambda r: f"{r['update_sync_bytes'] / r['full_sync_bytes']:.1%}"),
        ("tensors per update", lambda r: str(r["tensors_per_update"])),
        ("generation per batch", lambda r: f"{r['generate_s']:.3f} s"),
        ("probe max |Δ log p|", lambda r: f"{r['probe_max_abs_diff']:.1e}"),
    ]
    print(f"{'':24}" + "".join(f"{MODES[r['mode']]:>36}" for r in results))
    for label, cell in rows:
        print(f"{label:24}" + "".join(f"{cell(r):>36}" for r in results))
    summary = {r["mode"]: r for r in results}
    if {"merged", "adapters"} <= summary.keys():
        summary["adapter_vs_merged_sync_bytes"] = round(
            summary["adapters"]["update_sync_bytes"] / summary["merged"]["update_sync_bytes"], 4
        )
        summary["adapter_vs_merged_generate_s"] = round(
            summary["adapters"]["generate_s"] / summary["merged"]["generate_s"], 3
        )
    summary["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
