"""The per-family adapter interface and what the Qwen-VL families share.

A :class:`PolicyFamily` answers every question whose answer depends on the model family:

* which transformers class loads it (:meth:`PolicyFamily.model_class`);
* how the tiny builder makes its processor and config (:meth:`PolicyFamily.tiny_processor`,
  :meth:`PolicyFamily.tiny_config`) and which chat template it uses;
* which extra inputs the training forward passes (:meth:`PolicyFamily.forward_kwargs`: text-only batches get
  explicit 1-D positions; with images the model computes its own multimodal RoPE positions from
  ``mm_token_type_ids`` and the grids, exactly as in ``generate``);
* not the weight names: both engines take the transformers checkpoint names. The ``hf`` engine holds the same
  module, and the vLLM worker loads with ``reload_weights(…, is_checkpoint_format=True)``, which applies vLLM's
  own per-model ``hf_to_vllm_mapper`` (for Qwen2.5-VL and Qwen3-VL alike: ``model.language_model.`` →
  ``language_model.model.``, ``model.visual.`` → ``visual.``, ``lm_head.`` → ``language_model.lm_head.``, q/k/v
  and gate/up stacked). A family whose vLLM model lacks such a mapper would add the renaming here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from easyr1.core.registries import POLICY_FAMILIES

if TYPE_CHECKING:
    import torch

    from ..tiny import TinyPolicySpec


class TinyUnsupported(ValueError):
    """The tiny builder cannot make a policy of this family."""


class PolicyFamily:
    """One model family (a ``config.json`` ``model_type``). Subclasses override what differs."""

    model_type: str = ""
    patch_size: int = 14
    """Vision patch side in pixels."""
    spatial_merge_size: int = 2
    """Patches merged (per side) into one language-model token."""

    @property
    def facts(self) -> Any:
        return POLICY_FAMILIES.facts(self.model_type)

    @property
    def vision_unit(self) -> int:
        """Pixels per side of one merged vision token (28 for Qwen2.5-VL, 32 for Qwen3-VL)."""
        return self.patch_size * self.spatial_merge_size

    def model_class(self) -> Any:
        """The transformers ``…ForConditionalGeneration`` class."""
        import transformers

        return getattr(transformers, self.facts.model_class)

    # --------------------------------------------------------------------------------------- tiny builder

    @property
    def chat_template(self) -> str:
        """The chat template the tiny tokenizer and processor carry (real checkpoints bring their own)."""
        raise TinyUnsupported(f"the tiny builder cannot make a {self.model_type} policy")

    def tiny_processor(self, tokenizer: Any, spec: TinyPolicySpec) -> Any:
        """The family's processor around ``tokenizer`` with the spec's small pixel limits."""
        raise TinyUnsupported(f"the tiny builder cannot make a {self.model_type} policy")

    def tiny_config(self, tokenizer: Any, spec: TinyPolicySpec) -> Any:
        """The family's model config of the given sizes, special token ids taken from ``tokenizer``."""
        raise TinyUnsupported(f"the tiny builder cannot make a {self.model_type} policy")

    # ---------------------------------------------------------------------------------------- forward inputs

    def text_position_ids(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """(3, B, S) 1-D positions counted over attended tokens (left padding aware), for text-only batches."""
        pos = attention_mask.long().cumsum(-1) - 1
        pos = pos.masked_fill(attention_mask == 0, 0)
        return pos.unsqueeze(0).expand(3, -1, -1)

    def forward_kwargs(self, model_inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Keyword arguments of the training forward for a collated batch.

        With images or videos the model computes its multimodal RoPE positions itself (from ``input_ids``,
        ``mm_token_type_ids`` and the grids: the same code ``generate`` runs); a text-only batch gets explicit
        left-padding-aware positions, as ``generate`` derives them from the attention mask.
        """
        kwargs = dict(model_inputs)
        if "image_grid_thw" not in kwargs and "video_grid_thw" not in kwargs:
            kwargs["position_ids"] = self.text_position_ids(kwargs["attention_mask"])
        return kwargs

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_type!r})"


def mrope_sections(head_dim: int, ratio: tuple[int, int, int]) -> list[int]:
    """Split ``head_dim / 2`` rotary frequencies over (temporal, height, width) in about ``ratio``; height and
    width get equal shares, temporal the rest."""
    half = head_dim // 2
    hw = max(1, half * ratio[1] // sum(ratio))
    t = half - 2 * hw
    if t < 1:
        raise ValueError(f"head_dim {head_dim} is too small for M-RoPE sections")
    return [t, hw, hw]


def checked_mrope_section(section: tuple[int, int, int] | list[int], head_dim: int) -> list[int]:
    """A given (temporal, height, width) M-RoPE split as a list; ``ValueError`` unless it has three positive parts
    that add up to ``head_dim / 2``."""
    parts = [int(v) for v in section]
    if len(parts) != 3 or min(parts) < 1 or sum(parts) != head_dim // 2:
        raise ValueError(f"mrope_section {tuple(section)}: three positive parts adding up to {head_dim // 2} needed")
    return parts


def qwen_token_ids(tokenizer: Any) -> dict[str, int]:
    """The Qwen-VL special-token ids a family's config names (text bos/eos/pad ids, image/video placeholders and
    vision delimiters), looked up in ``tokenizer``."""
    from ..corpus import QWEN_SPECIAL_TOKENS

    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in QWEN_SPECIAL_TOKENS}
    return {
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }
