"""Qwen2.5-VL (and Qwen2-VL, loading only): patch 14, M-RoPE sections in consecutive blocks, window attention in
the vision tower, the Qwen2-VL chat template with its default system prompt."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..corpus import QWEN_VL_CHAT_TEMPLATE
from .base import PolicyFamily, checked_mrope_section, qwen_token_ids

if TYPE_CHECKING:
    from ..tiny import TinyPolicySpec


class Qwen2_5_VLFamily(PolicyFamily):
    model_type = "qwen2_5_vl"
    patch_size = 14

    @property
    def chat_template(self) -> str:
        return QWEN_VL_CHAT_TEMPLATE

    def tiny_processor(self, tokenizer: Any, spec: TinyPolicySpec) -> Any:
        """``Qwen2_5_VLProcessor``: ``Qwen2VLImageProcessor`` (patch 14, merge 2, CLIP mean/std) with small limits."""
        from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

        size = {"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels}
        return Qwen2_5_VLProcessor(
            image_processor=Qwen2VLImageProcessor(size=size),
            tokenizer=tokenizer,
            video_processor=Qwen2VLVideoProcessor(size=size),
            chat_template=self.chat_template,
        )

    def tiny_config(self, tokenizer: Any, spec: TinyPolicySpec) -> Any:
        """A ``Qwen2_5_VLConfig``: text decoder with q/k/v bias, vision tower with RMSNorm, gated MLP and window
        attention (the last block full attention)."""
        from transformers import Qwen2_5_VLConfig

        h = spec.hidden_size
        head_dim = h // spec.num_attention_heads
        # M-RoPE splits head_dim/2 rotary frequencies over (temporal, height, width) in consecutive blocks, the
        # temporal block first (highest frequencies); by default about Qwen's 2:3:3 ratio.
        half = head_dim // 2
        if spec.mrope_section is not None:
            mrope = checked_mrope_section(spec.mrope_section, head_dim)
        else:
            t = max(1, half // 4)
            mrope = [t, (half - t) // 2, half - t - (half - t) // 2]
        ids = qwen_token_ids(tokenizer)
        text_ids = {k: ids.pop(k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
        return Qwen2_5_VLConfig(
            text_config={
                "vocab_size": len(tokenizer),
                "hidden_size": h,
                "intermediate_size": spec.intermediate_size,
                "num_hidden_layers": spec.num_hidden_layers,
                "num_attention_heads": spec.num_attention_heads,
                "num_key_value_heads": spec.num_key_value_heads,
                "max_position_embeddings": spec.max_position_embeddings,
                "max_window_layers": spec.num_hidden_layers,
                "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
                **text_ids,
            },
            vision_config={
                "depth": spec.vision_depth,
                "hidden_size": spec.vision_hidden_size,
                "intermediate_size": spec.vision_intermediate_size,
                "num_heads": spec.vision_num_heads,
                "out_hidden_size": h,
                "fullatt_block_indexes": [spec.vision_depth - 1],
                "window_size": 112,
                "tokens_per_second": 2,
            },
            **ids,
            tie_word_embeddings=False,
        )


class Qwen2VLFamily(PolicyFamily):
    """Qwen2-VL: loads and trains like Qwen2.5-VL; the tiny builder does not make it."""

    model_type = "qwen2_vl"
    patch_size = 14


QWEN2_5_VL = Qwen2_5_VLFamily()
QWEN2_VL = Qwen2VLFamily()
