"""``QwenImageEditEditor``: Qwen-Image-Edit (diffusers) behind the :class:`~easyr1.editing.protocol.Editor` protocol.

What it does that a plain pipeline call does not:

* true classifier-free guidance really runs: ``true_cfg_scale`` together with a negative prompt (the pipeline
  silently skips CFG without one; ``guidance_scale`` is for guidance-distilled models and is never passed);
* the resolution policy: output *and* condition image at ``target_area`` pixels with the input's aspect
  (:mod:`easyr1.editing.resolution`), instead of a forced ~1024² condition;
* batched pipeline calls, grouped by output size, one ``torch.Generator`` per item seeded from the request, so an
  item's result does not depend on what it was batched with;
* the text-template prefix length (``prompt_template_encode_start_idx``) recomputed from the checkpoint's own
  tokenizer (the pipeline's 64 is right only for the real Qwen tokenizer);
* the text encoder gets its 3-D (M-RoPE) image positions: diffusers 0.42 omits ``mm_token_type_ids`` from the
  encoder call, so transformers ≥ 5 falls back to 1-D positions (:mod:`easyr1.editing.text_positions`);
* a distilled few-step LoRA and its scheduler settings as configuration (:mod:`easyr1.editing.distill`);
* NaN, black and constant outputs become failures with a reason; a failing call is bisected so that only the items
  that fail on their own fail. The input image is never returned in place of an edit.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from easyr1.core.types import EditRequest, EditResult

from .batching import check_output, chunked, edit_isolating_failures, group_indices
from .distill import apply_scheduler_overrides, load_distilled_lora
from .resolution import condition_area, supports_condition_area, target_size
from .text_positions import install_mrope_positions

if TYPE_CHECKING:
    from easyr1.config.editing import ImageEditConfig

logger = logging.getLogger(__name__)

PIPELINE_CLASSES = ("QwenImageEditPipeline", "QwenImageEditPlusPipeline")
"""Checkpoint classes (``model_index.json`` ``_class_name``) this editor loads."""


REAL_QWEN_VOCAB = 151_643
"""Tokenizers at least this large are Qwen's own, for which the pipeline's template constants are right."""


def pipeline_class_name(model_path: str | Path) -> str:
    """The pipeline class a diffusers checkpoint folder declares; clear errors for anything else."""
    root = Path(model_path)
    index = root / "model_index.json"
    if not root.is_dir():
        raise FileNotFoundError(f"worker.image_edit.model_path: {root} is not a directory (a diffusers checkpoint)")
    if not index.is_file():
        raise FileNotFoundError(f"worker.image_edit.model_path: {index} is missing (not a diffusers pipeline folder)")
    name = json.loads(index.read_text()).get("_class_name")
    if name not in PIPELINE_CLASSES:
        raise ValueError(f"{index}: pipeline class {name!r} is not one of {', '.join(PIPELINE_CLASSES)}")
    return name


def template_prefix_tokens(pipeline: Any) -> int:
    """Number of tokens of the pipeline's prompt template before the user content (what it must drop from the
    text encoder's output), counted with the checkpoint's tokenizer. 64 for the real Qwen tokenizer."""
    template: str = pipeline.prompt_template_encode
    head, marker, _ = template.partition("<|im_start|>user\n")
    if not marker:
        raise ValueError("unexpected Qwen-Image-Edit prompt template: no user turn")
    return len(pipeline.tokenizer(head + marker, add_special_tokens=False)["input_ids"])


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:2] if part.isdigit())


def resolve_torch_dtype(name: str, device: str):
    import torch

    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


class QwenImageEditEditor:
    """Edits with a local Qwen-Image-Edit (or Qwen-Image-Edit-2509 "Plus") diffusers checkpoint.

    ``edit(requests)`` returns one :class:`EditResult` per request, in order. Images come back at the target size
    (``target_area`` pixels, the input's aspect, sides multiples of 32).
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        num_inference_steps: int = 15,
        true_cfg_scale: float = 4.0,
        negative_prompt: str = " ",
        target_area: int = 1024 * 1024,
        batch_size: int = 4,
        dtype: str = "auto",
        device: str | None = None,
        enable_model_cpu_offload: bool = False,
        enable_sequential_cpu_offload: bool = False,
        detect_blank_outputs: bool = True,
        lora_path: str | Path | None = None,
        lora_scale: float = 1.0,
        fuse_lora: bool = True,
        scheduler: dict[str, Any] | None = None,
    ):
        import diffusers
        import torch

        self.model_path = Path(model_path)
        self.class_name = pipeline_class_name(self.model_path)
        self.num_inference_steps = int(num_inference_steps)
        self.true_cfg_scale = float(true_cfg_scale)
        self.negative_prompt = negative_prompt
        self.target_area = int(target_area)
        self.detect_blank_outputs = detect_blank_outputs
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.torch_dtype = resolve_torch_dtype(dtype, self.device)
        if self.true_cfg_scale > 1.0 and not negative_prompt:
            raise ValueError("worker.image_edit.negative_prompt must be non-empty when true_cfg_scale > 1 (use ' ')")

        pipeline_cls = getattr(diffusers, self.class_name)
        if not supports_condition_area(pipeline_cls):
            raise RuntimeError(f"{self.class_name} of diffusers {diffusers.__version__} cannot be resized (see docs)")
        started = time.perf_counter()
        # diffusers 0.42 renamed torch_dtype to dtype (the old name still works there, with a warning).
        dtype_key = "dtype" if _version_tuple(diffusers.__version__) >= (0, 42) else "torch_dtype"
        self.pipeline = pipeline_cls.from_pretrained(self.model_path, **{dtype_key: self.torch_dtype})
        self.pipeline.set_progress_bar_config(disable=True)
        apply_scheduler_overrides(self.pipeline, dict(scheduler or {}))
        self.lora = str(lora_path) if lora_path else None
        if self.lora:
            load_distilled_lora(self.pipeline, self.lora, scale=lora_scale, fuse=fuse_lora)
        on_gpu = self.device.startswith("cuda")
        if (enable_model_cpu_offload or enable_sequential_cpu_offload) and not on_gpu:
            logger.info("CPU offload requested but the editor runs on %s: ignored", self.device)
        if on_gpu and enable_sequential_cpu_offload:
            self.pipeline.enable_sequential_cpu_offload()
        elif on_gpu and enable_model_cpu_offload:
            self.pipeline.enable_model_cpu_offload()
        else:
            self.pipeline.to(self.device)
        self._set_template_prefix()
        self.mrope_hooked = install_mrope_positions(self.pipeline)
        # The Plus pipeline only accepts one prompt per call.
        self.batch_size = 1 if self.class_name == "QwenImageEditPlusPipeline" else max(1, int(batch_size))
        logger.info(
            "loaded %s from %s on %s (%s) in %.1fs; template prefix %d tokens; M-RoPE token types %s",
            self.class_name,
            self.model_path,
            self.device,
            self.torch_dtype,
            time.perf_counter() - started,
            self.pipeline.prompt_template_encode_start_idx,
            "supplied by the editor" if self.mrope_hooked else "not needed",
        )

    def _set_template_prefix(self) -> None:
        """Make the pipeline drop exactly the template's system part from the text encoder's output.

        diffusers' constant (64) is calibrated for the real Qwen tokenizer and is kept for it; any other tokenizer
        (the tiny one) gets the count from its own tokens.
        """
        default = self.pipeline.prompt_template_encode_start_idx
        counted = template_prefix_tokens(self.pipeline)
        if counted == default:
            return
        if len(self.pipeline.tokenizer) >= REAL_QWEN_VOCAB:
            logger.warning(
                "template prefix counts %d tokens but the pipeline drops %d; keeping the pipeline's value for this "
                "Qwen-sized tokenizer",
                counted,
                default,
            )
            return
        logger.info("template prefix: %d tokens with this tokenizer (pipeline constant %d)", counted, default)
        self.pipeline.prompt_template_encode_start_idx = counted

    @classmethod
    def from_config(cls, cfg: ImageEditConfig, device: str | None = None) -> QwenImageEditEditor:
        """Build from ``worker.image_edit``."""
        return cls(
            cfg.model_path,
            num_inference_steps=cfg.num_inference_steps,
            true_cfg_scale=cfg.true_cfg_scale,
            negative_prompt=cfg.negative_prompt,
            target_area=cfg.target_area,
            batch_size=cfg.batch_size,
            dtype=cfg.dtype,
            device=device,
            enable_model_cpu_offload=cfg.enable_model_cpu_offload,
            enable_sequential_cpu_offload=cfg.enable_sequential_cpu_offload,
            detect_blank_outputs=cfg.detect_blank_outputs,
            lora_path=cfg.lora_path or None,
            lora_scale=cfg.lora_scale,
            fuse_lora=cfg.fuse_lora,
            scheduler=dict(cfg.scheduler),
        )

    def output_size(self, image: Image.Image) -> tuple[int, int]:
        """``(width, height)`` an edit of ``image`` comes out at."""
        return target_size(image.size[0], image.size[1], self.target_area)

    def edit(self, requests: Sequence[EditRequest]) -> list[EditResult]:
        """Edit a batch: one result per request, in order."""
        results: list[EditResult | None] = [None] * len(requests)
        sizes = [self.output_size(r.image) for r in requests]
        for group in group_indices(sizes):
            for part in chunked(group, self.batch_size):
                batch = [requests[i] for i in part]
                for i, result in zip(part, edit_isolating_failures(self._edit_same_size, batch), strict=True):
                    results[i] = result
        return [r for r in results if r is not None]

    def pipeline_kwargs(self, requests: Sequence[EditRequest]) -> dict[str, Any]:
        """The keyword arguments of one pipeline call for same-size ``requests``."""
        import torch

        width, height = self.output_size(requests[0].image)
        images = [r.image.convert("RGB") for r in requests]
        prompts = [r.instruction for r in requests]
        single = self.class_name == "QwenImageEditPlusPipeline"
        kwargs: dict[str, Any] = {
            "image": images[0] if single else images,
            "prompt": prompts[0] if single else prompts,
            "true_cfg_scale": self.true_cfg_scale,
            "num_inference_steps": self.num_inference_steps,
            "height": height,
            "width": width,
            "generator": [torch.Generator(device="cpu").manual_seed(int(r.seed)) for r in requests],
            "output_type": "np",
        }
        if self.true_cfg_scale > 1.0:
            kwargs["negative_prompt"] = self.negative_prompt if single else [self.negative_prompt] * len(requests)
        return kwargs

    def _edit_same_size(self, requests: Sequence[EditRequest]) -> list[EditResult]:
        kwargs = self.pipeline_kwargs(requests)
        started = time.perf_counter()
        with condition_area(type(self.pipeline), self.target_area):
            output = self.pipeline(**kwargs)
        per_item = (time.perf_counter() - started) / len(requests)
        pixels = np.asarray(output.images, dtype=np.float32)
        if pixels.shape[0] != len(requests):
            raise RuntimeError(f"pipeline returned {pixels.shape[0]} images for {len(requests)} prompts")
        results = []
        for request, item in zip(requests, pixels, strict=True):
            info = {
                "backend": "qwen_image_edit",
                "seed": int(request.seed),
                "size": [kwargs["width"], kwargs["height"]],
                "num_inference_steps": self.num_inference_steps,
                "true_cfg_scale": self.true_cfg_scale,
                "batch": len(requests),
                **({"lora": self.lora} if self.lora else {}),
            }
            problem = check_output(item) if self.detect_blank_outputs else None
            if problem is None and not np.isfinite(item).all():
                problem = ("nan_output", {"detail": "non-finite values in the decoded image"})
            if problem is not None:
                reason, detail = problem
                logger.warning("edit of %s rejected: %s (%s)", request.key, reason, detail["detail"])
                results.append(EditResult(None, False, reason, {**info, **detail}, per_item))
                continue
            image = Image.fromarray(np.clip(np.rint(item * 255.0), 0, 255).astype(np.uint8))
            results.append(EditResult(image, True, None, info, per_item))
        return results
