"""M-RoPE positions for the Qwen-Image-Edit text encoder.

Qwen2.5-VL places image tokens on a 3-D (temporal, height, width) rotary grid. In transformers ≥ 5.x the model
builds those positions only when the caller passes ``mm_token_type_ids`` (which tokens are image / video tokens);
without it ``compute_3d_position_ids`` returns ``None`` and every token, image tokens included, gets the plain 1-D
text position. diffusers 0.42's ``QwenImageEditPipeline._get_qwen_prompt_embeds`` (and the Plus pipeline's) run
the processor — which does return ``mm_token_type_ids`` — but hand the encoder only ``input_ids``,
``attention_mask``, ``pixel_values`` and ``image_grid_thw``. The conditioning then differs from the one
Qwen-Image-Edit was trained with (on the real model the image tokens' positions are wrong by up to the grid side).

:func:`install_mrope_positions` fixes the call at the encoder's boundary instead of copying the pipelines' prompt
code: a forward pre-hook on the text encoder adds the ``mm_token_type_ids`` the pipeline left out, computed from
``input_ids`` by the pipeline's own processor (``create_mm_token_type_ids``, the exact function the processor used).
It changes nothing when the caller already passes them (a future diffusers), when the call carries no images, or
when the installed model does not take the argument (older transformers infer the positions from ``input_ids``).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

logger = logging.getLogger(__name__)

MM_TOKEN_TYPE_IDS = "mm_token_type_ids"


def encoder_takes_token_types(text_encoder: Any) -> bool:
    """Whether the text encoder's ``forward`` accepts ``mm_token_type_ids`` (transformers ≥ 5 Qwen2.5-VL)."""
    try:  # the class's forward: accelerate's offload hooks wrap the instance's
        return MM_TOKEN_TYPE_IDS in inspect.signature(type(text_encoder).forward).parameters
    except (TypeError, ValueError):
        return False


def token_types_for(processor: Any, input_ids: Any) -> Any:
    """``mm_token_type_ids`` (0 text, 1 image, 2 video) for a batch of ``input_ids``, as a tensor beside them."""
    import torch

    types = processor.create_mm_token_type_ids(input_ids)
    return torch.as_tensor(types, dtype=torch.int32, device=input_ids.device).reshape(input_ids.shape)


def install_mrope_positions(pipeline: Any) -> bool:
    """Make every call of ``pipeline.text_encoder`` carry ``mm_token_type_ids``; ``True`` when a hook was installed.

    Idempotent: a second call on the same encoder installs nothing.
    """
    encoder = pipeline.text_encoder
    processor = pipeline.processor
    if getattr(encoder, "_easyr1_mrope_hook", None) is not None:
        return True
    if not encoder_takes_token_types(encoder):
        logger.info("text encoder takes no %s: positions come from input_ids, no hook needed", MM_TOKEN_TYPE_IDS)
        return False
    if not callable(getattr(processor, "create_mm_token_type_ids", None)):
        raise RuntimeError(
            f"{type(processor).__name__} cannot compute {MM_TOKEN_TYPE_IDS} but {type(encoder).__name__} needs them "
            "for 3-D (M-RoPE) positions; this transformers/diffusers combination is not supported"
        )

    def add_token_types(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if kwargs.get(MM_TOKEN_TYPE_IDS) is not None:
            return None
        input_ids = kwargs.get("input_ids")
        has_vision = kwargs.get("image_grid_thw") is not None or kwargs.get("video_grid_thw") is not None
        if input_ids is None or not has_vision:
            return None
        return args, {**kwargs, MM_TOKEN_TYPE_IDS: token_types_for(processor, input_ids)}

    encoder._easyr1_mrope_hook = encoder.register_forward_pre_hook(add_token_types, with_kwargs=True)
    return True
