"""One FSDP2 actor worker (a Ray actor in the pool; a plain object works too for a one-process world).

Holds the trainable policy, its optimizer and schedule, and the frozen reference. All ranks receive shards of the
same size and run the same number of forward/backward calls (FSDP's collectives require it).
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import time
import warnings
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist

from easyr1.config.actor import OptimConfig
from easyr1.models.forward import response_log_probs
from easyr1.models.inputs import EncodedPrompt, PolicyInputs, collate, encode_prompt
from easyr1.models.loading import LoadedPolicy, load_policy, resolve_dtype
from easyr1.pools.placement import worker_device, worker_threads
from easyr1.transfer.lora import merge_state_dict
from easyr1.transfer.weight_sync import (
    TensorSpec,
    WeightPlan,
    WeightSyncGroup,
    dtype_from_name,
    dtype_name,
    local_host,
    make_plan,
)
from easyr1.transfer.weight_sync import wire_dtype as _wire_dtype

from . import checkpoint as ckpt
from . import lora
from .batch import PolicyBatch, fixed_micro_batches, token_budget_partition
from .fsdp import (
    apply_fsdp2,
    collective_device,
    device_mesh,
    full_state_dict,
    init_process_group,
    iter_full_tensors,
    move_model,
    move_optimizer,
    process_group_backend,
    state_specs,
)
from .grad_norm import clip_grad_norm_
from .optim import build_optimizer, build_scheduler
from .settings import ActorSettings
from .update import ppo_update, sft_update

logger = logging.getLogger(__name__)

# FSDP2 warns that the root module returns views (logits); we never modify model outputs in place.
warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")


class ActorWorker:
    """Rank ``rank`` of ``world_size``. Call :meth:`rendezvous` on rank 0, then :meth:`setup` on all ranks at once."""

    def __init__(self, settings: ActorSettings, rank: int, world_size: int):
        self.settings = settings
        self.rank = rank
        self.world_size = world_size
        self.device = worker_device(settings.placement)
        if self.device == "cuda":
            torch.cuda.set_device(0)  # Ray exposes exactly this worker's GPU(s)
        torch.set_num_threads(worker_threads(settings.placement))
        self.policy: LoadedPolicy | None = None
        self.model: Any = None
        self.ref_model: Any = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.global_step = 0
        self._sync_store: Any = None
        self._sync_group: WeightSyncGroup | None = None
        self._resend_static = False  # the next weight sync must be full (set by load_checkpoint)

    # ------------------------------------------------------------------ set-up
    def rendezvous(self) -> tuple[str, int]:
        """Rank 0: an address and free port for the actor world's TCP rendezvous."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return local_host(), port

    def setup(self, host: str, port: int) -> dict[str, Any]:
        s = self.settings
        backend = process_group_backend(self.device)
        init_process_group(host, port, self.rank, self.world_size, backend)
        torch.manual_seed(s.actor.seed + self.rank)
        mesh = device_mesh(self.device, self.world_size)
        cfg = s.actor.model
        # Mixed precision keeps fp32 master weights and computes in fsdp.param_dtype.
        master_dtype = "float32" if s.actor.fsdp.mixed_precision else cfg.dtype
        self.policy = self._load(master_dtype, training=True)
        if s.lora:
            lora.apply_lora(
                self.policy.model, s.actor.lora, train_vision_tower=not cfg.freeze_vision_tower, seed=s.actor.seed
            )
        self.model = self._shard(
            self.policy.model, mesh=mesh, cpu_offload=s.actor.fsdp.enable_cpu_offload, mixed_precision=None
        )
        self.configure_optimizer(s.optim, s.total_steps)
        if s.with_reference and not s.lora:  # with LoRA the reference is self.model with adapters disabled
            ref = self._load(cfg.dtype, training=False).model
            ref.requires_grad_(False)
            self.ref_model = self._shard(ref, mesh=mesh, cpu_offload=s.ref.offload_params, mixed_precision=False)
        self._offload()
        n_params = sum(p.numel() for p in self.model.parameters())  # local shards
        return {"rank": self.rank, "device": self.device, "backend": backend, "local_params": n_params}

    @property
    def collective_device(self) -> torch.device:
        """Every tensor this worker hands to a collective of the actor world lives here (the worker's device)."""
        return collective_device(self.device)

    @property
    def _rank0_init(self) -> bool:
        return self.settings.actor.fsdp.enable_rank0_init and self.world_size > 1

    def _load(self, dtype: str, *, training: bool) -> LoadedPolicy:
        cfg = self.settings.actor.model
        return load_policy(
            cfg.model_path,
            tokenizer_path=cfg.tokenizer_path,
            dtype=dtype,
            attn_implementation=cfg.attn_implementation,
            device=self.device,
            freeze_vision_tower=cfg.freeze_vision_tower and training,
            gradient_checkpointing=cfg.enable_gradient_checkpointing and training,
            trust_remote_code=cfg.trust_remote_code,
            load_weights=self.rank == 0 or not self._rank0_init,
            family=cfg.model_family,
        )

    def _shard(self, model: Any, *, mesh: Any, cpu_offload: bool, mixed_precision: bool | None) -> Any:
        """FSDP2-wrap ``model``; with ``fsdp.enable_rank0_init`` rank 0's weights are then broadcast to all."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        full = dict(model.state_dict()) if self._rank0_init and self.rank == 0 else {}
        sharded = apply_fsdp2(
            model,
            mesh=mesh,
            fsdp=self.settings.actor.fsdp,
            device=self.device,
            cpu_offload=cpu_offload,
            mixed_precision=mixed_precision,
        )
        if self._rank0_init:
            options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
            set_model_state_dict(sharded, full, options=options)
        return sharded

    @property
    def idle_offload(self) -> bool:
        """Whether ``actor.offload`` applies: on GPU without FSDP's own CPU offload (which already keeps
        parameters on CPU)."""
        return self.device == "cuda" and not self.settings.actor.fsdp.enable_cpu_offload

    @contextlib.contextmanager
    def _resident(self, *, optimizer: bool) -> Iterator[None]:
        """Bring idle-offloaded parameters — and, with ``optimizer``, the optimizer state — back to the GPU for
        the duration of a call. Forward-only calls (log-probs, weight sync) pass ``optimizer=False``: the AdamW
        state (2× the parameters) stays where it is."""
        self._move(self.device, optimizer=optimizer)
        try:
            yield
        finally:
            self._move("cpu", optimizer=optimizer)

    def _offload(self) -> None:
        self._move("cpu", optimizer=True)

    def _move(self, device: str, *, optimizer: bool) -> None:
        if not self.idle_offload:
            return
        off = self.settings.actor.offload
        if off.offload_params:
            move_model(self.model, device)
        if optimizer and off.offload_optimizer and self.optimizer is not None:
            move_optimizer(self.optimizer, device)

    def configure_optimizer(self, optim: OptimConfig, total_steps: int | None) -> None:
        """(Re)create AdamW and the schedule (e.g. after an SFT warm start in the same pool)."""
        self.optimizer = build_optimizer(self.model.parameters(), optim)
        self.scheduler = build_scheduler(self.optimizer, optim, total_steps)
        self.settings.optim, self.settings.total_steps = optim, total_steps

    @property
    def processor(self) -> Any:
        assert self.policy is not None, "setup() first"
        return self.policy.processor

    @property
    def pad_token_id(self) -> int:
        return int(self.processor.tokenizer.pad_token_id)

    # ------------------------------------------------------------- batching
    def encode(self, batch: PolicyBatch) -> list[EncodedPrompt]:
        """Encode each distinct prompt object once (the n samples of a group share one)."""
        cache: dict[int, EncodedPrompt] = {}
        out = []
        for prompt in batch.prompts:
            key = id(prompt)
            if key not in cache:
                cache[key] = encode_prompt(self.processor, prompt)
            out.append(cache[key])
        return out

    def micro_batches(self, encoded: list[EncodedPrompt], batch: PolicyBatch, micro_batch_size: int) -> list[list[int]]:
        """Index groups for forward/backward calls; the same count on every rank."""
        n = len(batch)
        if self.settings.actor.dynamic_batching:
            lengths = [len(e) + len(r) for e, r in zip(encoded, batch.responses, strict=True)]
            budget = self.settings.actor.max_token_len_per_device
            parts = self._max_over_ranks(len(token_budget_partition(lengths, budget)))
            return token_budget_partition(lengths, budget, num_parts=min(parts, n))
        groups = fixed_micro_batches(n, micro_batch_size)
        if self._max_over_ranks(len(groups)) != len(groups):
            raise RuntimeError("actor ranks got different micro-batch counts (shards must have equal sizes)")
        return groups

    def _max_over_ranks(self, value: int) -> int:
        if self.world_size == 1:
            return value
        t = torch.tensor([value], dtype=torch.int64, device=self.collective_device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def inputs(self, encoded: list[EncodedPrompt], batch: PolicyBatch, idx: list[int]) -> PolicyInputs:
        return collate([encoded[i] for i in idx], [batch.responses[i] for i in idx], pad_token_id=self.pad_token_id).to(
            self.device
        )

    # ------------------------------------------------------------ experience
    @torch.no_grad()
    def compute_log_probs(
        self, batch: PolicyBatch, which: str = "actor", temperature: float | None = None
    ) -> torch.Tensor:
        """(b, T) log-probs of this shard's responses under the current policy (``actor``) or the reference
        (``ref``); zeros past each response's end; float32 on CPU. ``temperature`` overrides the settings' (the
        weight-sync probe compares raw, temperature-1 log-probs)."""
        temperature = self.settings.logprob_temperature if temperature is None else temperature
        base = contextlib.nullcontext()
        if which == "ref" and self.settings.lora:
            model, size = self.model, self.settings.ref.micro_batch_size_per_device_for_experience
            base = lora.adapters_disabled(self.model)
        elif which == "ref":
            if self.ref_model is None:
                raise RuntimeError("this actor pool was built without a reference model")
            model, size = self.ref_model, self.settings.ref.micro_batch_size_per_device_for_experience
        else:
            model, size = self.model, self.settings.actor.micro_batch_size_per_device_for_experience
        encoded = self.encode(batch)
        out = torch.zeros(len(batch), batch.max_response_length, dtype=torch.float32)
        was_training = model.training
        model.eval()
        try:
            resident = self._resident(optimizer=False) if model is self.model else contextlib.nullcontext()
            with resident, base:
                for idx in self.micro_batches(encoded, batch, size):
                    inputs = self.inputs(encoded, batch, idx)
                    logp, _ = response_log_probs(model, inputs, temperature=temperature)
                    out[idx, : logp.shape[1]] = (logp * inputs.response_mask).float().cpu()
        finally:
            model.train(was_training)
        return out

    # --------------------------------------------------------------- updates
    def update_policy(self, batch: PolicyBatch, mini_batch_size: int) -> dict[str, float]:
        """PPO/GSPO over this shard: ``ppo_epochs`` passes of mini-batches of ``mini_batch_size`` responses."""
        if batch.old_log_probs is None:
            batch = batch.with_fields(old_log_probs=self.compute_log_probs(batch))
        if self.settings.use_kl_loss and batch.ref_log_probs is None:
            raise ValueError("update_policy: the KL loss is on but the batch has no ref_log_probs")
        start = time.perf_counter()
        with self._resident(optimizer=True):
            metrics = ppo_update(self, batch, mini_batch_size)
        metrics["actor/update_time_s"] = time.perf_counter() - start
        return metrics

    def sft_step(self, batch: PolicyBatch) -> dict[str, float]:
        """One optimizer step of token-mean cross-entropy on the responses of this shard."""
        with self._resident(optimizer=True):
            return sft_update(self, batch)

    def optimizer_step(self) -> tuple[float, bool]:
        """Clip, step (skipped when the gradient norm is not finite), schedule. Returns (grad norm, stepped)."""
        assert self.optimizer is not None
        params = [p for p in self.model.parameters() if p.requires_grad]
        # FSDP2-aware: local shard norms (CPU shards too, with fsdp.enable_cpu_offload), reduced on this device.
        grad_norm = clip_grad_norm_(params, self.settings.actor.max_grad_norm, device=self.collective_device)
        stepped = math.isfinite(grad_norm)
        if stepped:
            self.optimizer.step()
        else:
            logger.warning("non-finite gradient norm %s: optimizer step skipped", grad_norm)
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.global_step += 1
        return grad_norm, stepped

    # ----------------------------------------------------------------- state
    def save_checkpoint(self, path: str) -> None:
        with self._resident(optimizer=True):
            ckpt.save_checkpoint(self, path)

    def load_checkpoint(self, path: str) -> None:
        with self._resident(optimizer=True):
            ckpt.load_checkpoint(self, path)
        self._resend_static = True  # engines may hold other frozen weights than the checkpoint's

    def export_hf(self, path: str, dtype: str | None = None) -> None:
        ckpt.export_hf(self, path, dtype)

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The unsharded policy weights on CPU (rank 0; ``{}`` on other ranks); with LoRA the merged plain
        weights (``W + scaling · B A``, the plain model's names)."""
        state = full_state_dict(self.model)
        if self.settings.lora and state:
            state = merge_state_dict(state, self.lora_scaling)
        return state

    @property
    def lora_scaling(self) -> float:
        cfg = self.settings.actor.lora
        return cfg.alpha / cfg.rank

    def optimizer_state_summary(self) -> dict[str, Any]:
        """Per-parameter sums of this rank's optimizer state shards plus the schedule position (for tests/logs)."""
        assert self.optimizer is not None
        summary: dict[str, Any] = {"step": self.global_step, "lr": self.scheduler.get_last_lr()[0]}
        names = {id(p): n for n, p in self.model.named_parameters()}
        for p, state in self.optimizer.state.items():
            for key, value in state.items():
                local = value.to_local() if hasattr(value, "to_local") else value
                summary[f"{names[id(p)]}/{key}"] = float(local.double().sum())
        return summary

    # ----------------------------------------------------------- weight sync
    def weight_plan(self, engine_dtype: str, bucket_bytes: int) -> WeightPlan:
        """Every state-dict entry, floating ones in the engines' dtype; entries that are not trainable parameters
        (a frozen vision tower, buffers) are marked static: sent in full syncs only."""
        dtype = resolve_dtype(engine_dtype, self.device) if engine_dtype == "auto" else getattr(torch, engine_dtype)
        trainable = {n for n, p in self.model.named_parameters(remove_duplicate=False) if p.requires_grad}
        if self.settings.lora:
            shapes = {n: (s, d) for n, s, d in state_specs(self.model)}
            layout = lora.sync_layout(shapes, self.settings.lora_sync)
            return make_plan(lora.sync_specs(layout, shapes, trainable, dtype), bucket_bytes)
        specs = [
            TensorSpec(n, s, dtype_name(_wire_dtype(d, dtype)), static=n not in trainable)
            for n, s, d in state_specs(self.model)
        ]
        return make_plan(specs, bucket_bytes)

    def start_weight_sync_server(self) -> tuple[str, int]:
        """Rank 0: host the weight-sync rendezvous; returns (host, port) for the engines."""
        self._sync_store, host, port = WeightSyncGroup.start_server()
        return host, port

    def join_weight_sync(self, host: str, port: int, world_size: int, backend: str) -> None:
        """Rank 0 joins the weight-sync group as its rank 0 (concurrently with the engines)."""
        self._sync_group = WeightSyncGroup.join(host, port, 0, world_size, backend, store=self._sync_store)

    def broadcast_weights(self, plan: WeightPlan) -> int:
        """All ranks gather full tensors (FSDP collective; shards cast to the engines' dtype first); rank 0
        broadcasts them bucket by bucket to the engines. The first sync over a group and the first after
        :meth:`load_checkpoint` are full; later ones leave the plan's static tensors (frozen vision tower) out.
        Returns bytes sent (0 on other ranks)."""
        if self.rank == 0 and self._sync_group is None:
            raise RuntimeError("broadcast_weights before join_weight_sync")
        plan = WeightPlan.from_wire(plan)
        full = self._full_sync_needed()
        floating = [dtype_from_name(t.dtype) for t in plan.tensors if dtype_from_name(t.dtype).is_floating_point]
        with self._resident(optimizer=False):
            names, keep, layout = set(plan.sent_names(full)), set(), None
            if self.settings.lora:
                layout = lora.sync_layout([n for n, _, _ in state_specs(self.model)], self.settings.lora_sync)
                names, keep = lora.sources(layout, names)
            tensors = iter_full_tensors(
                self.model,
                device=self.collective_device,
                dtype=floating[0] if floating else None,
                names=names,
                keep_dtype=keep,
            )
            if layout is not None:
                tensors = lora.sync_tensors(layout, plan.sent_names(full), tensors, self.lora_scaling)
            if self.rank != 0:
                for _ in tensors:
                    pass
                sent = 0
            else:
                try:
                    sent = self._sync_group.send(plan, tensors, full=full)
                except Exception:
                    self._abandon_sync(tensors)
                    raise
        self._resend_static = False
        return sent

    def _abandon_sync(self, tensors: Iterator[Any]) -> None:
        """Rank 0's broadcast failed (an engine was lost mid-sync): gather the rest of the tensors anyway — the
        other ranks are in the same FSDP all-gathers and would wait for this one — and drop the broken group (the
        rollout pool builds a new one before it syncs again)."""
        for _ in tensors:
            pass
        if self._sync_group is not None:
            self._sync_group.close()
        self._sync_group, self._sync_store = None, None

    def _full_sync_needed(self) -> bool:
        """Whether this sync must carry the static tensors too; agreed by all ranks (they gather the same set)."""
        need = self._resend_static or (self.rank == 0 and not self._sync_group.static_sent)
        if self.world_size > 1:
            flag = torch.tensor([int(need)], dtype=torch.int64, device=self.collective_device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            need = bool(flag.item())
        return need

    def ping(self) -> int:
        return self.rank

    def shutdown(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()
