"""``worker.image_edit``: the editor pool (Qwen-Image-Edit replicas, or the sandbox's procedural editor)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from easyr1.core.registries import EDITOR_BACKENDS

from .base import ConfigError, check_choice, check_non_negative, check_positive


@dataclass
class ImageEditConfig:
    backend: str = "qwen_image_edit"
    """Editor, a name of ``easyr1.core.registries.EDITOR_BACKENDS``: ``qwen_image_edit`` (diffusers pipeline) or
    ``sandbox`` (procedural editor of the sandbox world)."""
    model_path: str = "tiny/editor"
    """Local directory of a ``QwenImageEditPipeline`` (or ``QwenImageEditPlusPipeline``) checkpoint."""
    num_replicas: int = 1
    """Editor replicas (Ray actors; one GPU each on a cluster). Seed alias: ``worker.image_edit.num_gpus``."""
    batch_size: int = 4
    """Images per pipeline call (grouped by output size)."""
    num_inference_steps: int = 15
    """Denoising steps."""
    true_cfg_scale: float = 4.0
    """True classifier-free guidance scale (Qwen-Image-Edit's CFG; needs a negative prompt; 1.0 disables)."""
    negative_prompt: str = " "
    """Negative prompt used by true CFG."""
    lora_path: str = ""
    """A diffusers LoRA for the editor's transformer (folder or ``.safetensors`` file), e.g. a distilled 4/8-step
    ("Lightning") LoRA; set ``num_inference_steps``, ``true_cfg_scale: 1.0`` and ``scheduler`` to what it was
    distilled with. Empty: none. Needs ``peft``."""
    lora_scale: float = 1.0
    """Strength of ``lora_path`` (1.0 as distilled)."""
    fuse_lora: bool = True
    """Merge the LoRA into the transformer's weights at load (no per-step adapter cost); off keeps a live adapter."""
    scheduler: dict[str, Any] = field(default_factory=dict)
    """Overrides of the pipeline scheduler's own config (e.g. ``{shift: 3.0, use_dynamic_shifting: false}`` for a
    few-step LoRA); every key must be a setting of that scheduler."""
    target_area: int = 1048576
    """Output/condition area in pixels (aspect of the input kept, sides multiples of 32). The pipeline's
    default is ~1024²; small areas make CPU runs fast."""
    dtype: str = "auto"
    """``auto`` (bf16 on GPU, fp32 on CPU), ``float32`` or ``bfloat16``."""
    seed_mode: str = "per_item"
    """``per_item`` (seed from sample id and re-edit index) or ``per_group`` (one seed per prompt group)."""
    base_seed: int = 0
    """Mixed into every derived seed."""
    enable_model_cpu_offload: bool = False
    """diffusers model CPU offload: whole models move to the GPU when used (GPU memory for speed; GPU only)."""
    enable_sequential_cpu_offload: bool = False
    """diffusers sequential CPU offload: layer by layer (least GPU memory, slowest; GPU only; wins over
    ``enable_model_cpu_offload``)."""
    max_retries: int = 2
    """Times a request is retried after its replica crashed or timed out."""
    request_timeout_s: float = 600.0
    """Per-batch timeout of a replica call; a replica past it is restarted and its requests retried."""
    startup_timeout_s: float = 900.0
    """Time a replica may take to load its pipeline (at start, and after a restart) before it is given up."""
    max_replica_restarts: int = 16
    """Times the pool replaces a lost (crashed, killed or hung) replica with a fresh actor over the pool's life
    (-1: no limit), counted in ``editor/restarts``; a replica past it is retired and the others carry on; when none
    is left the step fails with one line (``WorkerLost``)."""
    detect_blank_outputs: bool = True
    """Treat NaN, all-black or constant outputs as failures."""

    def validate(self, path: str) -> Iterator[ConfigError]:
        yield from check_choice(f"{path}.backend", self.backend, EDITOR_BACKENDS.names())
        yield from check_positive(f"{path}.num_replicas", self.num_replicas)
        yield from check_positive(f"{path}.batch_size", self.batch_size)
        yield from check_positive(f"{path}.num_inference_steps", self.num_inference_steps)
        yield from check_non_negative(f"{path}.true_cfg_scale", self.true_cfg_scale)
        yield from check_positive(f"{path}.target_area", self.target_area)
        if self.target_area < 64 * 64:
            yield ConfigError(f"{path}.target_area", self.target_area, "must be at least 4096 (64x64)")
        yield from check_choice(f"{path}.dtype", self.dtype, ["auto", "float32", "bfloat16"])
        yield from check_choice(f"{path}.seed_mode", self.seed_mode, ["per_item", "per_group"])
        yield from check_non_negative(f"{path}.max_retries", self.max_retries)
        yield from check_positive(f"{path}.request_timeout_s", self.request_timeout_s)
        yield from check_positive(f"{path}.startup_timeout_s", self.startup_timeout_s)
        if self.lora_path and self.backend != "qwen_image_edit":
            yield ConfigError(
                f"{path}.lora_path", self.lora_path, "is a Qwen-Image-Edit setting (backend qwen_image_edit)"
            )
        if self.max_replica_restarts < -1:
            yield ConfigError(f"{path}.max_replica_restarts", self.max_replica_restarts, "must be -1 or at least 0")
        if self.true_cfg_scale > 1.0 and not self.negative_prompt:
            yield ConfigError(
                f"{path}.negative_prompt",
                self.negative_prompt,
                "must be non-empty when true_cfg_scale > 1 (true CFG needs a negative prompt; ' ' is the default)",
            )
