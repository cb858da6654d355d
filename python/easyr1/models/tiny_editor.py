"""A tiny random-weight Qwen-Image-Edit pipeline built offline from the real diffusers/transformers classes.

``build_tiny_editor(out_dir, seed)`` writes a ``QwenImageEditPipeline`` (MMDiT transformer, Qwen-Image VAE,
flow-matching scheduler, a tiny ``Qwen2_5_VLForConditionalGeneration`` text encoder, a byte-level BPE tokenizer
trained here on a built-in corpus, and the stock ``Qwen2VLProcessor``) with ``save_pretrained``. The folder loads
with ``QwenImageEditPipeline.from_pretrained`` exactly like the real checkpoint, so every test of the editor runs
the production loading and calling code. Same seed → same files, byte for byte.

Two traps the loading side (``easyr1.editing.qwen_image_edit``) takes care of:

* the pipeline drops a fixed 64 template tokens from the text encoder's output
  (``prompt_template_encode_start_idx``), which is right only for the real Qwen tokenizer; the editor recomputes
  it from whatever tokenizer the checkpoint has;
* the pipeline conditions on a ~1024² copy of the input whatever output size is asked for; the editor's
  target-area policy changes that.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from itertools import product
from pathlib import Path

from .corpus import QWEN_SPECIAL_TOKENS

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = QWEN_SPECIAL_TOKENS
"""Qwen2 / Qwen2.5-VL special tokens in the order the real tokenizer numbers them (shared with the policy)."""

# The Qwen2 pre-tokenizer split (contractions, letter runs, single digits, punctuation runs, whitespace).
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# The system prompt both Qwen-Image-Edit pipelines put in front of every instruction.
_EDIT_SYSTEM_PROMPT = (
    "Describe the key features of the input image (color, shape, size, texture, objects, background), then explain "
    "how the user's text instruction should alter or modify the image. Generate a new image that meets the user's "
    "requirements while maintaining consistency with the original input where appropriate."
)
_VERBS = ("add", "remove", "move", "make", "change", "replace", "turn", "put", "place", "fix", "darken", "brighten")
_OBJECTS = ("shadow", "ball", "tree", "sky", "ground", "sun", "cloud", "car", "house", "person", "cup", "lamp")
_ATTRIBUTES = ("red", "blue", "green", "dry", "wet", "bright", "dark", "left", "right", "small", "large", "clear")

VOCAB_SIZE = 640
"""Target size of the trained BPE vocabulary (special tokens come on top)."""


def corpus() -> Iterator[str]:
    """Fixed text the tokenizer is trained on: the pipeline templates and a re-edit instruction vocabulary."""
    yield "system\nuser\nassistant\n"
    yield _EDIT_SYSTEM_PROMPT
    for i in range(1, 5):
        yield f"Picture {i}: "
    for verb, obj, attr in product(_VERBS, _OBJECTS, _ATTRIBUTES):
        yield f"{verb.capitalize()} the {attr} {obj}; {verb} the {obj} to the {attr} side."
    yield "Improve the image quality and consistency. Keep the rest of the scene unchanged."


def build_tokenizer(vocab_size: int = VOCAB_SIZE):
    """Train a byte-level BPE on :func:`corpus` and wrap it as a ``Qwen2Tokenizer`` with Qwen's special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AddedToken, Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(list(corpus()), trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=state["vocab"], merges=merges)
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS], special_tokens=True)
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|endoftext|>"
    tokenizer.padding_side = "right"
    return tokenizer


def build_processor(tokenizer):
    """The stock ``Qwen2VLProcessor`` with small pixel limits (a 64×64 image becomes 4 vision tokens)."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor

    image_processor = Qwen2VLImageProcessor(
        size={"shortest_edge": 28 * 28 * 4, "longest_edge": 28 * 28 * 16}, patch_size=14, merge_size=2
    )
    try:
        from transformers import Qwen2VLVideoProcessor

        video_processor = Qwen2VLVideoProcessor(
            size={"shortest_edge": 28 * 28 * 4, "longest_edge": 28 * 28 * 16}, patch_size=14, merge_size=2
        )
    except ImportError:  # torchvision missing: the pipeline only ever sends images
        video_processor = None
    return Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor)


def build_text_encoder(tokenizer, hidden_size: int = 32):
    """A random ``Qwen2_5_VLForConditionalGeneration`` whose hidden size is the transformer's joint dimension."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab = (len(tokenizer) + 63) // 64 * 64
    # M-RoPE splits half of each head's dimensions over (temporal, height, width), like the real 2:3:3 split.
    half_head = hidden_size // 2 // 2
    mrope = [half_head - 2 * (3 * half_head // 8), 3 * half_head // 8, 3 * half_head // 8]
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=vocab,
            hidden_size=hidden_size,
            intermediate_size=2 * hidden_size,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": mrope},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=hidden_size,
            fullatt_block_indexes=[1],
            window_size=112,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def build_tiny_editor(out_dir: Path, seed: int = 0) -> Path:
    """Build the tiny pipeline with random weights drawn from ``seed`` and save it into ``out_dir``.

    Returns ``out_dir``. Deterministic: the same seed gives the same files. Takes a few seconds on 2 cores.
    """
    import torch
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageEditPipeline,
        QwenImageTransformer2DModel,
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer)
    joint_dim = 32
    torch.manual_seed(seed)
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=3,
        joint_attention_dim=joint_dim,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLQwenImage(
        base_dim=24,
        z_dim=4,
        dim_mult=[1, 2, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    )
    torch.manual_seed(seed + 2)
    text_encoder = build_text_encoder(tokenizer, hidden_size=joint_dim)
    pipeline = QwenImageEditPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae.eval(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        processor=processor,
        transformer=transformer.eval(),
    )
    pipeline.save_pretrained(out_dir, safe_serialization=True)
    logger.info("tiny Qwen-Image-Edit pipeline (seed %d) written to %s", seed, out_dir)
    return out_dir
