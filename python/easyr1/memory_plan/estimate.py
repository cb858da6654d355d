"""Per-GPU memory of each pool, by arithmetic on the model shapes and the config (no torch, no weights).

Each ``plan_*`` function returns a :class:`PoolEstimate`: the bytes of every component in each phase of the
pool's work (the peak is the largest phase), plus what lives in host memory. The component model follows what the
code does (``easyr1.actor``, ``easyr1.rollout.vllm_engine``, ``easyr1.editing``) and is documented, with its
assumptions and its checks, in ``docs/memory.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from easyr1.core.registries import ENGINES

from .shapes import EditorShape, PolicyShape

if TYPE_CHECKING:
    from easyr1.config import EasyR1Config

GIB = 1024**3
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}

CUDA_CONTEXT_BYTES = 1 * GIB
"""CUDA context, cuBLAS/cuDNN workspaces and NCCL buffers of one GPU process (what ``nvidia-smi`` shows beyond
PyTorch's own allocations); measured values on H100 are 0.5–1 GiB."""

PROMPT_TEXT_TOKENS = 1024
"""Text tokens of a prompt besides its images (system prompt, instruction, chat template) when the planner bounds the
prompt length by its images (``data.max_prompt_length`` is a cap, not a typical length)."""


def logprob_chunk_copies(compute: int, *, backward: bool) -> int:
    """float32 copies of one logits chunk alive inside the chunked log-prob kernel: the logsumexp intermediate and,
    in backward, the chunk's gradient; bf16 logits add the upcast copy (and its recomputation)."""
    copies = 2 if backward else 1
    return copies if compute == 4 else 2 * copies


VAE_LIVE_TENSORS = 22
"""Peak of a VAE decode, in feature maps of ``base_dim`` channels at the output resolution, per image. Measured on
CPU (peak RSS): 22.2 for the Qwen-Image VAE config (base 96, dim_mult 1-2-4-4) at 256², 19.9 for the tiny one at
512² (the decoder's upsampling stages hold several wider maps at once; the encode peaks at ~14)."""

VLLM_DEFAULT_MAX_NUM_SEQS = 256
"""vLLM's default ``max_num_seqs`` for the offline ``LLM`` class (the engine does not set it)."""

CUDA_GRAPH_BYTES = 1 * GIB
"""vLLM CUDA-graph pools (``enforce_eager=false``), typically 0.5–1 GiB."""


def dtype_bytes(name: str, device: str) -> int:
    """Bytes per element of a config dtype name (``auto`` → bf16 on GPU, fp32 on CPU)."""
    if name == "auto":
        return 2 if device.startswith("cuda") else 4
    return DTYPE_BYTES[name]


@dataclass
class PoolEstimate:
    """Per-GPU (or per-process on CPU) memory of one pool."""

    pool: str
    gpus: int
    """GPUs the pool uses (0 on CPU)."""
    phases: dict[str, dict[str, int]]
    """Phase name → component name → bytes."""
    host: dict[str, int] = field(default_factory=dict)
    """Host (CPU) memory per process, component → bytes."""
    notes: list[str] = field(default_factory=list)
    budget_bytes: int | None = None
    """A self-imposed budget inside the GPU (vLLM's ``gpu_memory_utilization``), when the pool has one."""
    facts: dict[str, int] = field(default_factory=dict)
    """Pool-specific numbers the verdict needs (vLLM: ``kv_tokens``, ``max_model_len``, ``seq_tokens``,
    ``demand``)."""

    def phase_total(self, phase: str) -> int:
        return sum(self.phases[phase].values())

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=self.phase_total)

    @property
    def peak_bytes(self) -> int:
        return self.phase_total(self.peak_phase)


def prompt_tokens(cfg: EasyR1Config, shape: PolicyShape) -> int:
    """Longest prompt the planner assumes: its images at ``data.max_pixels`` plus :data:`PROMPT_TEXT_TOKENS`, at
    most ``max_prompt_length``."""
    rollout = cfg.worker.rollout
    by_images = rollout.limit_images * shape.image_tokens(cfg.data.max_pixels) + PROMPT_TEXT_TOKENS
    return min(rollout.prompt_length or cfg.data.max_prompt_length, by_images)


def response_tokens(cfg: EasyR1Config) -> int:
    return cfg.worker.rollout.response_length or cfg.data.max_response_length


def layer_activation_bytes(shape: PolicyShape, b: int) -> int:
    """Bytes one token leaves saved for backward in one decoder layer (compute dtype ``b`` bytes): the attention
    block (norm output, q/k/v before and after RoPE, attention output and o_proj input), the MLP (norm output,
    gate, up, activation, product) and the two RMSNorms, which upcast to float32."""
    h, kv, i = shape.hidden_size, shape.kv_dim, shape.intermediate_size
    return b * (6 * h + 3 * kv + 4 * i) + 2 * (4 * h + b * h)


def layer_forward_bytes(shape: PolicyShape, b: int) -> int:
    """Bytes per token alive inside one decoder layer's forward without autograd (residual, q/k/v, MLP hidden)."""
    h, kv, i = shape.hidden_size, shape.kv_dim, shape.intermediate_size
    return b * (3 * h + 2 * kv + 3 * i)


def plan_actor(
    cfg: EasyR1Config, shape: PolicyShape, *, device: str = "cuda", prompt_len: int | None = None
) -> PoolEstimate:
    """One FSDP2 actor rank: sharded states, the unsharded root and layers, activations and logits."""
    from easyr1.actor.settings import needs_reference

    actor = cfg.worker.actor
    on_gpu = device.startswith("cuda")
    world = actor.num_workers
    mp = actor.fsdp.mixed_precision
    master = 4 if mp else dtype_bytes(actor.model.dtype, device)
    compute = DTYPE_BYTES[actor.fsdp.param_dtype] if mp else master
    reduce = DTYPE_BYTES[actor.fsdp.reduce_dtype] if mp else master
    state = 2 if actor.optim.strategy == "adamw_bf16" else master
    total, trainable = shape.total_params, shape.total_params
    if actor.model.freeze_vision_tower:
        trainable -= shape.vision_params
    lora = actor.lora
    if lora.enabled:  # adapters train (plus a trained vision tower); the base weights are frozen
        adapters = shape.num_layers * shape.lora_layer_params(lora.rank, list(lora.target_modules))
        total += adapters
        trainable = adapters + (0 if actor.model.freeze_vision_tower else shape.vision_params)
    offload = actor.fsdp.enable_cpu_offload and on_gpu

    sharded = {
        "parameters (shard)": math.ceil(total / world) * master,
        "gradients (shard)": math.ceil(trainable / world) * master,
        "optimizer states (shard)": math.ceil(trainable / world) * 2 * state,
    }
    host: dict[str, int] = {}
    if offload:
        host.update(sharded)
        sharded = dict.fromkeys(sharded, 0)
    ref_b = dtype_bytes(actor.model.dtype, device)
    with_ref = needs_reference(cfg) and not lora.enabled  # LoRA: the reference is the model with adapters off
    ref_resident = math.ceil(total / world) * ref_b if with_ref else 0
    if with_ref and cfg.worker.ref.offload_params and on_gpu:
        host["reference (shard)"], ref_resident = ref_resident, 0

    root = shape.root_params * compute
    layer = max(shape.layer_params, shape.vision_block_params) * compute
    gathered = 2 * layer  # the layer computing and the next one, prefetched
    layer_grads = shape.layer_params * (compute + (reduce if reduce != compute else 0))
    lm_head_grad = shape.vocab_size * shape.hidden_size * compute
    base = {"cuda context": CUDA_CONTEXT_BYTES} if on_gpu else {}

    p_len = prompt_len if prompt_len is not None else prompt_tokens(cfg, shape)
    t_len = response_tokens(cfg)
    seq = p_len + t_len
    if actor.dynamic_batching:
        micro = max(1, actor.max_token_len_per_device // seq)
        tokens = max(actor.max_token_len_per_device, seq)
    else:
        micro = actor.micro_batch_size_per_device_for_update
        tokens = micro * seq
    h = shape.hidden_size
    per_layer = tokens * layer_activation_bytes(shape, compute)
    if actor.model.enable_gradient_checkpointing:
        saved = shape.num_layers * tokens * h * compute
        recompute = per_layer
    else:
        saved = shape.num_layers * per_layer
        recompute = 0
    saved += tokens * (4 * h + compute * h)  # final norm
    logits = micro * (t_len + 1) * shape.vocab_size * compute
    if cfg.worker.rollout.temperature not in (0.0, 1.0):
        logits *= 2  # logits / temperature is a copy
    chunk_rows = min(actor.entropy_chunk_size, micro * t_len)
    chunk = chunk_rows * shape.vocab_size * 4 * logprob_chunk_copies(compute, backward=True)
    vision_tokens = cfg.worker.rollout.limit_images * shape.image_patches(cfg.data.max_pixels)
    vision_b = compute * (4 * shape.vision_hidden_size + 3 * shape.vision_intermediate_size)
    vision_act = micro * vision_tokens * vision_b
    if not actor.model.freeze_vision_tower and not actor.model.enable_gradient_checkpointing:
        vision_act *= shape.vision_depth

    states = {**base, **sharded, **({"reference (shard)": ref_resident} if ref_resident else {})}
    phases = {
        "update: backward of the logits": {
            **states,
            "root unit (unsharded)": root,
            "layers all-gathered (2)": gathered,
            "activations saved for backward": saved + vision_act,
            "logits and their gradient (3 copies)": 3 * logits,
            "log-prob chunk (fp32)": chunk,
            "LM-head gradient (unsharded)": lm_head_grad,
        },
        "update: backward through the layers": {
            **states,
            "root unit (unsharded)": root,
            "layers all-gathered (2)": gathered,
            "activations saved for backward": saved + vision_act,
            "recomputed layer activations": recompute,
            "layer gradients before reduce-scatter": layer_grads,
            "LM-head gradient (unsharded)": lm_head_grad,
        },
        "update: root gradients reduce-scatter": {
            **states,
            "root unit (unsharded)": root,
            "root gradients (unsharded)": shape.root_params * (compute + (reduce if reduce != compute else 0)),
        },
    }
    if actor.optim.strategy == "adamw_bf16":
        from easyr1.actor.optim import BF16_ADAMW_CHUNK

        adamw_temporaries = 5 * 4 * min(BF16_ADAMW_CHUNK, math.ceil(trainable / world))  # fp32, one chunk at a time
    else:
        adamw_temporaries = math.ceil(trainable / world) * state  # torch's foreach AdamW: one state-sized copy
    if not offload:
        phases["optimizer step"] = {
            **states,
            "AdamW temporaries": adamw_temporaries,
        }
    micro_e = actor.micro_batch_size_per_device_for_experience
    tokens_e = micro_e * seq
    resident = {**base, "parameters (shard)": sharded["parameters (shard)"]}
    if not offload and not (on_gpu and actor.offload.offload_optimizer):
        # Forward-only calls bring back the parameters only: idle-offloaded AdamW state stays on the host.
        resident["optimizer states (shard)"] = sharded["optimizer states (shard)"]
    if ref_resident:
        resident["reference (shard)"] = ref_resident
    phases["log-probs (experience, no grad)"] = {
        **resident,
        "root unit (unsharded)": root,
        "layers all-gathered (2)": gathered,
        "layer forward working set": tokens_e * (layer_forward_bytes(shape, compute) + 2 * h * compute),
        "logits": micro_e * (t_len + 1) * shape.vocab_size * compute,
        "log-prob chunk (fp32)": min(actor.entropy_chunk_size, micro_e * t_len)
        * shape.vocab_size
        * 4
        * logprob_chunk_copies(compute, backward=False),
    }
    notes = [
        f"sequence {seq} tokens = prompt {p_len} (≤ {cfg.worker.rollout.limit_images} images at max_pixels "
        f"{cfg.data.max_pixels} + {PROMPT_TEXT_TOKENS} text, capped by max_prompt_length) + response {t_len}",
        f"{world} rank(s); {total / 1e9:.2f}B parameters ({trainable / 1e9:.2f}B trained), root unit "
        f"{shape.root_params / 1e9:.2f}B; master {8 * master}-bit, compute {8 * compute}-bit, AdamW states "
        f"{8 * state}-bit; micro-batch {micro} (update) / {micro_e} (log-probs)",
    ]
    off = actor.offload
    if on_gpu and not offload and (off.offload_params or off.offload_optimizer):
        freed = sharded["parameters (shard)"] * off.offload_params + sharded["optimizer states (shard)"] * (
            off.offload_optimizer
        )
        notes.append(
            f"idle offload frees {freed / GIB:.1f} GiB while the actor waits (useful only when pools share GPUs); "
            "it does not lower the peak"
        )
    return PoolEstimate("actor", world if on_gpu else 0, phases, host, notes)


def kv_bytes_per_token(shape: PolicyShape, tp: int, b: int = 2) -> int:
    """KV-cache bytes per token on one GPU (K and V of every layer; KV heads split over TP, replicated when fewer)."""
    return 2 * shape.num_layers * math.ceil(shape.num_kv_heads / tp) * shape.head_dim * b


def plan_rollout(
    cfg: EasyR1Config, shape: PolicyShape, *, gpu_bytes: int, prompt_len: int | None = None
) -> PoolEstimate:
    """One rollout GPU: vLLM (weights / TP, profiling activations, CUDA graphs, KV cache inside
    ``gpu_memory_utilization``) or the ``hf`` engine (weights, generate's KV cache and logits)."""
    rollout = cfg.worker.rollout
    p_len = prompt_len if prompt_len is not None else prompt_tokens(cfg, shape)
    t_len = response_tokens(cfg)
    b = dtype_bytes(cfg.worker.actor.model.dtype, "cuda")
    h, i = shape.hidden_size, shape.intermediate_size
    demand = math.ceil(cfg.data.rollout_batch_size * rollout.n / rollout.num_engines)
    if not ENGINES.facts(rollout.name).reserves_memory:  # memory follows each generate call (hf)
        batch = rollout.generation_batch_size
        phase = {
            "cuda context": CUDA_CONTEXT_BYTES,
            "weights": shape.total_params * b,
            "KV cache of one generate call": batch * (p_len + t_len) * kv_bytes_per_token(shape, 1, b),
            "prefill working set": batch * p_len * (layer_forward_bytes(shape, b) + 2 * h * b),
            "logits (fp32)": batch * shape.vocab_size * 4 * 2,
        }
        return PoolEstimate("rollout", 1, {"generate": phase}, notes=[f"hf engine, {batch} sequences per call"])
    tp = rollout.tensor_parallel_size
    budget = int(rollout.gpu_memory_utilization * gpu_bytes)
    max_len = rollout.max_model_len or (rollout.prompt_length or cfg.data.max_prompt_length) + t_len
    tokens = rollout.max_num_batched_tokens
    act = tokens * b * (2 * h + (h + 2 * shape.kv_dim + 3 * i) // tp)
    act += VLLM_DEFAULT_MAX_NUM_SEQS * shape.vocab_size * 4 * 2  # sampler logits and probabilities
    fixed = {
        "cuda context": CUDA_CONTEXT_BYTES,
        "weights (1/TP)": math.ceil(shape.total_params / tp) * b,
        "profiled activations": act,
        "CUDA graphs": 0 if rollout.enforce_eager else CUDA_GRAPH_BYTES,
    }
    kv = max(0, budget - sum(fixed.values()))
    per_token = kv_bytes_per_token(shape, tp, b)
    kv_tokens = kv // per_token
    seq = p_len + t_len
    notes = [
        f"TP {tp}; budget gpu_memory_utilization {rollout.gpu_memory_utilization} × {gpu_bytes / GIB:.1f} GiB = "
        f"{budget / GIB:.1f} GiB; KV cache {kv / GIB:.1f} GiB = {kv_tokens:,} tokens at {per_token / 1024:.0f} KiB "
        f"per token",
        f"max_model_len {max_len}: {kv_tokens / max_len:.1f} full-length sequences fit; {kv_tokens / seq:.1f} "
        f"sequences of {seq} tokens (prompt {p_len} + response {t_len}) run at once for {demand} per engine per "
        f"step (max_num_seqs {VLLM_DEFAULT_MAX_NUM_SEQS}, vLLM's default)",
    ]
    facts = {"kv_tokens": kv_tokens, "max_model_len": max_len, "seq_tokens": seq, "demand": demand}
    phases = {"generate": {**fixed, "KV cache": kv}}
    return PoolEstimate("rollout", rollout.num_engines * tp, phases, notes=notes, budget_bytes=budget, facts=facts)


def plan_editor(
    cfg: EasyR1Config, shape: EditorShape, *, device: str = "cuda", prompt_text_tokens: int = 128
) -> PoolEstimate:
    """One editor replica: pipeline weights in its dtype, then the largest of the text encoder, one transformer
    pass (true CFG runs the conditional and unconditional passes one after the other) and the VAE decode."""
    edit = cfg.worker.image_edit
    on_gpu = device.startswith("cuda")
    b = dtype_bytes(edit.dtype, device)
    plus = shape.pipeline == "QwenImageEditPlusPipeline"
    batch = 1 if plus else edit.batch_size
    area = edit.target_area
    latent_tokens = area // (shape.vae_scale * shape.patch_size) ** 2
    text = shape.text_encoder
    vl_pixels = 384 * 384 if plus else area
    text_tokens = prompt_text_tokens + text.image_tokens(vl_pixels)
    d = shape.inner_dim
    components = {
        "transformer": shape.transformer_params * b,
        "text encoder": shape.text_encoder_params * b,
        "VAE": shape.vae_params * b,
    }
    if on_gpu and edit.enable_sequential_cpu_offload:
        weights = {"one offloaded module at a time": math.ceil(shape.transformer_params / shape.num_layers) * b}
    elif on_gpu and edit.enable_model_cpu_offload:
        weights = {"largest component (model offload)": max(components.values())}
    else:
        weights = {f"{k} weights": v for k, v in components.items()}
    base = {"cuda context": CUDA_CONTEXT_BYTES} if on_gpu else {}
    seq = batch * (2 * latent_tokens + text_tokens)
    h, kv, i = text.hidden_size, text.kv_dim, text.intermediate_size
    text_tokens_total = batch * text_tokens
    vision_patches = batch * text.image_patches(vl_pixels)
    vl_vision = vision_patches * b * (4 * text.vision_hidden_size + 3 * text.vision_intermediate_size)
    phases = {
        "text encoder": {
            **base,
            **weights,
            "vision tower working set": vl_vision,
            "decoder working set": text_tokens_total * b * (2 * h + 2 * kv + 3 * i),
            "hidden states of every layer": text_tokens_total * h * b * (text.num_layers + 1),
        },
        "transformer pass": {
            **base,
            **weights,
            "residual streams (image + text)": seq * d * b * 2,
            "block working set (qkv, attention, MLP)": seq * d * b * 13,
        },
        "VAE decode": {
            **base,
            **weights,
            "decoder feature maps": batch * area * shape.vae_base_dim * b * VAE_LIVE_TENSORS,
        },
    }
    notes = [
        f"{shape.pipeline}: {shape.total_params / 1e9:.2f}B parameters in {8 * b}-bit; batch {batch} at {area:,} px "
        f"→ {seq:,} transformer tokens per pass (output + condition latents + {text_tokens} text)"
    ]
    return PoolEstimate("editor", edit.num_replicas if on_gpu else 0, phases, notes=notes)
