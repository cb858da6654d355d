"""Full fine-tuning vs LoRA on the same small policy, same data and steps (issue 22).

Each mode runs in its own subprocess (a one-rank FSDP2 actor, gloo, CPU, KL loss on) so its peak RSS is clean:

1. ``--steps`` PPO steps on fixed random responses (old and reference log-probs, update) — step time, actor peak
   RSS over the process baseline, trainable parameters, optimizer-state bytes (summed over AdamW's state tensors),
   reference-model bytes (the frozen copy's tensors; LoRA: the policy with adapters disabled, 0 bytes);
2. then an ``hf`` engine (fp32, a thread in the same process) joins the real weight-sync group: one full sync, then
   one update sync after each of ``--syncs`` further PPO steps, the engine/actor log-prob probe checked after each —
   sync bytes and seconds per update sync.

Modes: full fine-tuning; LoRA with adapter-only sync (what the ``hf`` engine gets); LoRA with merged-weight sync
(what vLLM gets: whole adapted decoder layers, ``W + scaling · B A``). The vision tower is frozen in all three.

Prints a table, then one JSON line. Goals (issue 22): LoRA update-sync bytes ≤ 5 % of full FT's; reference bytes 0;
step time no worse.

    python benchmarks/lora.py                 # bench-sized policy (~8 M parameters), 6 steps (~3 min on 2 cores)
    python benchmarks/lora.py --steps 3 --hidden 128
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MODES = {"full": "full fine-tuning", "lora": "LoRA, adapter sync", "lora_merged": "LoRA, merged-weight sync"}


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _batch(step: int, n: int):
    import torch

    from easyr1.actor.batch import PolicyBatch
    from easyr1.rollout.probe import probe_prompts

    g = torch.Generator().manual_seed(1000 + step)
    prompts = probe_prompts(2)
    lengths = torch.randint(8, 33, (n,), generator=g).tolist()
    responses = [torch.randint(0, 800, (k,), generator=g).tolist() for k in lengths]
    advantages = torch.randn(n, generator=g)
    return PolicyBatch([prompts[i % 2] for i in range(n)], responses, advantages=advantages)


def _tensor_bytes(tensors) -> int:
    total = 0
    for t in tensors:
        local = t.to_local() if hasattr(t, "to_local") else t
        total += local.numel() * local.element_size()
    return total


def run_mode(args: argparse.Namespace) -> dict:
    """One mode in this process (called in the subprocess)."""
    import torch

    from easyr1.actor.settings import actor_settings
    from easyr1.actor.worker import ActorWorker
    from easyr1.config import EasyR1Config
    from easyr1.rollout.hf_engine import HFRolloutEngine

    torch.set_num_threads(args.threads)
    cfg = EasyR1Config()
    cfg.worker.actor.model.model_path = args.policy
    cfg.worker.actor.model.enable_gradient_checkpointing = False
    cfg.worker.actor.model.freeze_vision_tower = True
    cfg.worker.actor.global_batch_size = 2
    cfg.worker.actor.micro_batch_size_per_device_for_update = 4
    cfg.worker.actor.micro_batch_size_per_device_for_experience = 8
    cfg.worker.actor.optim.lr = args.lr
    cfg.worker.rollout.n = args.batch // 2
    cfg.worker.rollout.response_length = 32
    cfg.data.max_response_length = 32
    cfg.data.rollout_batch_size = 2
    cfg.algorithm.use_kl_loss, cfg.algorithm.disable_kl = True, False
    if args.mode.startswith("lora"):
        cfg.worker.actor.lora.rank = args.rank
        cfg.worker.actor.lora.alpha = 2.0 * args.rank
        cfg.worker.actor.lora.sync = "merged" if args.mode == "lora_merged" else "adapters"
    settings = actor_settings(cfg)
    baseline = _rss_mb()
    worker = ActorWorker(settings, rank=0, world_size=1)
    worker.setup(*worker.rendezvous())
    step_times = []
    for step in range(args.steps):
        batch = _batch(step, args.batch)
        start = time.perf_counter()
        batch = batch.with_fields(
            old_log_probs=worker.compute_log_probs(batch), ref_log_probs=worker.compute_log_probs(batch, "ref")
        )
        worker.update_policy(batch, mini_batch_size=args.batch)
        step_times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    trainable = sum(p.numel() for p in worker.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in worker.model.parameters())
    optim_bytes = _tensor_bytes(v for state in worker.optimizer.state.values() for k, v in state.items() if k != "step")
    ref_bytes = 0 if worker.ref_model is None else _tensor_bytes(worker.ref_model.state_dict().values())

    engine = HFRolloutEngine(args.policy, dtype="float32", threads=args.threads)
    host, port = worker.start_weight_sync_server()
    joiner = threading.Thread(target=engine.init_weight_sync, args=(host, port, 1, 2, "gloo"))
    joiner.start()
    worker.join_weight_sync(host, port, 2, "gloo")
    joiner.join(timeout=120)
    plan = worker.weight_plan("float32", 64 << 20)

    def sync() -> tuple[int, float]:
        got: dict[str, int] = {}
        receiver = threading.Thread(target=lambda: got.update(n=engine.receive_weights(plan)))
        start = time.perf_counter()
        receiver.start()
        sent = worker.broadcast_weights(plan)
        receiver.join(timeout=300)
        assert got["n"] == sent
        return sent, time.perf_counter() - start

    def probe() -> float:
        batch = _batch(999, 4)
        actor = worker.compute_log_probs(batch, temperature=1.0)
        eng = engine.log_probs(batch.prompts, batch.responses)
        return max(abs(v - float(actor[i, j])) for i, row in enumerate(eng) for j, v in enumerate(row))

    full_bytes, full_s = sync()
    probes = [probe()]
    update_bytes, update_s = [], []
    for step in range(args.syncs):
        batch = _batch(100 + step, args.batch)
        batch = batch.with_fields(
            old_log_probs=worker.compute_log_probs(batch), ref_log_probs=worker.compute_log_probs(batch, "ref")
        )
        worker.update_policy(batch, mini_batch_size=args.batch)
        sent, seconds = sync()
        update_bytes.append(sent)
        update_s.append(seconds)
        probes.append(probe())
    worker.shutdown()
    timed = step_times[1:] or step_times  # the first step includes lazy initialisation
    return {
        "mode": args.mode,
        "params": total,
        "trainable_params": trainable,
        "optimizer_state_bytes": optim_bytes,
        "reference_model_bytes": ref_bytes,
        "actor_peak_rss_mb": peak,
        "actor_peak_over_baseline_mb": peak - baseline,
        "step_s": sum(timed) / len(timed),
        "full_sync_bytes": full_bytes,
        "full_sync_s": full_s,
        "update_sync_bytes": sum(update_bytes) / len(update_bytes),
        "update_sync_s": sum(update_s) / len(update_s),
        "sync_mode": settings.lora_sync if args.mode.startswith("lora") else "full",
        "probe_max_abs_diff": max(probes),
    }


def build_policy(out: Path, hidden: int, layers: int) -> None:
    from easyr1.models.tiny import TinyPolicySpec, build_tiny_policy

    spec = TinyPolicySpec(
        hidden_size=hidden,
        intermediate_size=3 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 32,
        num_key_value_heads=max(1, hidden // 64),
    )
    build_tiny_policy(out, seed=0, spec=spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6, help="timed PPO steps per mode")
    parser.add_argument("--syncs", type=int, default=3, help="update syncs per mode (one PPO step before each)")
    parser.add_argument("--batch", type=int, default=8, help="responses per step")
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank (alpha = 2 × rank)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mode", choices=list(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--policy", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:  # the subprocess
        print(json.dumps(run_mode(args)))
        return

    with tempfile.TemporaryDirectory(prefix="easyr1-lora-bench-") as tmp:
        policy = Path(tmp) / "policy"
        build_policy(policy, args.hidden, args.layers)
        results = {}
        passthrough = [f"--{k}={getattr(args, k)}" for k in ("steps", "syncs", "batch", "rank", "lr", "threads")]
        for mode in MODES:
            cmd = [sys.executable, __file__, f"--mode={mode}", f"--policy={policy}", *passthrough]
            env = {**os.environ, "PYTHONWARNINGS": "ignore"}
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
            results[mode] = json.loads(out.strip().splitlines()[-1])
    full, lora, merged = results["full"], results["lora"], results["lora_merged"]
    rows = [
        ("trainable params", "trainable_params", "{:,.0f}"),
        ("optimizer state MB", "optimizer_state_bytes", "MB"),
        ("reference model MB", "reference_model_bytes", "MB"),
        ("actor peak RSS MB", "actor_peak_rss_mb", "{:.0f}"),
        ("  over baseline MB", "actor_peak_over_baseline_mb", "{:.0f}"),
        ("step time s", "step_s", "{:.3f}"),
        ("full sync MB", "full_sync_bytes", "MB"),
        ("update sync MB", "update_sync_bytes", "MB"),
        ("update sync s", "update_sync_s", "{:.3f}"),
        ("probe max |Δ logp|", "probe_max_abs_diff", "{:.1e}"),
    ]
    print(f"policy: {full['params']:,} parameters; LoRA r={args.rank}, alpha {2 * args.rank}; hf engine (fp32)")
    print(f"{'':22}{'full FT':>14}{'LoRA adapters':>16}{'LoRA merged':>14}")
    for label, key, fmt in rows:
        cells = [f"{r[key] / 2**20:.3f}" if fmt == "MB" else fmt.format(r[key]) for r in (full, lora, merged)]
        print(f"{label:22}{cells[0]:>14}{cells[1]:>16}{cells[2]:>14}")
    summary = {
        "params": full["params"],
        "lora_rank": args.rank,
        "steps": args.steps,
        "full": full,
        "lora": lora,
        "lora_merged": merged,
        "sync_bytes_ratio": lora["update_sync_bytes"] / full["update_sync_bytes"],
        "merged_sync_bytes_ratio": merged["update_sync_bytes"] / full["update_sync_bytes"],
        "optimizer_bytes_ratio": lora["optimizer_state_bytes"] / full["optimizer_state_bytes"],
        "step_time_ratio": lora["step_s"] / full["step_s"],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
