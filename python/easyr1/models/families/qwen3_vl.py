"""Qwen3-VL (and Qwen3-VL-MoE, loading only).

What differs from Qwen2.5-VL, as transformers and vLLM implement it:

* vision tower: patch 16 (one merged token = 32×32 pixels), LayerNorm and a plain GELU MLP, a learned position
  embedding interpolated to the grid, no window attention; "DeepStack": the outputs of the blocks listed in
  ``deepstack_visual_indexes`` go through mergers of their own and are added to the hidden states of the image
  tokens after the first decoder layers;
* text decoder: Qwen3 attention (no q/k/v bias, RMSNorm on q and k per head, explicit ``head_dim``);
* M-RoPE with *interleaved* sections (``mrope_interleaved``: frequencies cycle t, h, w instead of three blocks) and
  ``get_rope_index`` that gives each video frame a grid of its own; the model computes these positions itself from
  ``mm_token_type_ids`` and ``image_grid_thw``, in the training forward and in ``generate`` alike, so the shared
  :meth:`PolicyFamily.forward_kwargs` applies unchanged;
* image normalisation mean/std 0.5 (not CLIP's);
* chat template: no default system prompt.

vLLM loads Qwen3-VL checkpoint names with its own ``hf_to_vllm_mapper`` (``model.visual.`` → ``visual.``,
``model.language_model.`` → ``language_model.model.``, ``lm_head.`` → ``language_model.lm_head.``), so the weight
sync sends transformers names as for Qwen2.5-VL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..corpus import QWEN3_VL_CHAT_TEMPLATE
from .base import PolicyFamily, checked_mrope_section, mrope_sections, qwen_token_ids

if TYPE_CHECKING:
    from ..tiny import TinyPolicySpec

MROPE_RATIO = (24, 20, 20)
"""Qwen3-VL's (temporal, height, width) split of the 64 rotary frequencies of a 128 head."""

IMAGE_MEAN_STD = [0.5, 0.5, 0.5]


class Qwen3VLFamily(PolicyFamily):
    model_type = "qwen3_vl"
    patch_size = 16

    @property
    def chat_template(self) -> str:
        return QWEN3_VL_CHAT_TEMPLATE

    def tiny_processor(self, tokenizer: Any, spec: TinyPolicySpec) -> Any:
        """``Qwen3VLProcessor``: ``Qwen2VLImageProcessor`` with patch 16, merge 2, mean/std 0.5 and small limits,
        and the ``Qwen3VLVideoProcessor``."""
        from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

        size = {"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels}
        common = {
            "size": size,
            "patch_size": self.patch_size,
            "merge_size": self.spatial_merge_size,
            "temporal_patch_size": 2,
            "image_mean": IMAGE_MEAN_STD,
            "image_std": IMAGE_MEAN_STD,
        }
        return Qwen3VLProcessor(
            image_processor=Qwen2VLImageProcessor(**common),
            tokenizer=tokenizer,
            video_processor=Qwen3VLVideoProcessor(**common),
            chat_template=self.chat_template,
        )

    def tiny_config(self, tokenizer: Any, spec: TinyPolicySpec) -> Any:
        """A ``Qwen3VLConfig`` of the spec's sizes: interleaved M-RoPE in Qwen3-VL's 24:20:20 ratio, DeepStack from
        every vision block but the last, a 8×8 learned vision position grid."""
        from transformers import Qwen3VLConfig

        h = spec.hidden_size
        head_dim = h // spec.num_attention_heads
        ids = qwen_token_ids(tokenizer)
        text_ids = {k: ids.pop(k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
        rope = {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": (
                mrope_sections(head_dim, MROPE_RATIO)
                if spec.mrope_section is None
                else checked_mrope_section(spec.mrope_section, head_dim)
            ),
            "mrope_interleaved": True,
        }
        return Qwen3VLConfig(
            text_config={
                "vocab_size": len(tokenizer),
                "hidden_size": h,
                "intermediate_size": spec.intermediate_size,
                "num_hidden_layers": spec.num_hidden_layers,
                "num_attention_heads": spec.num_attention_heads,
                "num_key_value_heads": spec.num_key_value_heads,
                "head_dim": head_dim,
                "max_position_embeddings": spec.max_position_embeddings,
                "rope_parameters": rope,
                **text_ids,
                "tie_word_embeddings": False,
            },
            vision_config={
                "depth": spec.vision_depth,
                "hidden_size": spec.vision_hidden_size,
                "intermediate_size": spec.vision_intermediate_size,
                "num_heads": spec.vision_num_heads,
                "out_hidden_size": h,
                "patch_size": self.patch_size,
                "spatial_merge_size": self.spatial_merge_size,
                "temporal_patch_size": 2,
                "num_position_embeddings": 64,
                "deepstack_visual_indexes": list(range(max(1, spec.vision_depth - 1))),
            },
            **ids,
            tie_word_embeddings=False,
        )


class Qwen3VLMoeFamily(PolicyFamily):
    """Qwen3-VL-MoE: loads like Qwen3-VL; the tiny builder does not make it."""

    model_type = "qwen3_vl_moe"
    patch_size = 16


QWEN3_VL = Qwen3VLFamily()
QWEN3_VL_MOE = Qwen3VLMoeFamily()
