"""Tiny real-architecture models built offline: a random-weight Qwen2.5-VL policy with a locally trained tokenizer.

``easyr1 make-tiny --out DIR`` writes ``DIR/policy`` (this module) and ``DIR/editor`` (``tiny_editor``). Both are
ordinary Hugging Face folders, loaded with the same code as the real Qwen2.5-VL-7B and Qwen-Image-Edit checkpoints.
Everything is deterministic for a given seed: the tokenizer depends only on the built-in corpus, the weights only on
the seed.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .corpus import QWEN_SPECIAL_TOKENS, QWEN_VL_CHAT_TEMPLATE, corpus_lines

logger = logging.getLogger(__name__)

PATCH = 28
"""One merged vision token covers 28×28 pixels (patch 14, spatial merge 2)."""


@dataclass(frozen=True)
class TinyPolicySpec:
    """Sizes of the tiny policy. The defaults give ~0.3 M parameters; a 64×64 image becomes 4 vision tokens."""

    vocab_size: int = 1024
    """Target BPE vocabulary (the corpus may yield fewer merges); special tokens come on top."""
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    vision_depth: int = 2
    vision_hidden_size: int = 32
    vision_intermediate_size: int = 64
    vision_num_heads: int = 2
    min_pixels: int = PATCH * PATCH * 4
    max_pixels: int = PATCH * PATCH * 16
    max_position_embeddings: int = 4096


SANDBOX_POLICY_SPEC = TinyPolicySpec(
    hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2
)
"""The policy ``easyr1 demo`` and ``benchmarks/learning.py`` train (~0.95 M parameters, head size 32 so vLLM's CPU
attention accepts it too). The default 0.29 M spec does not condition on the prompt after a short warm start: its
greedy answer is the same for every row (measured: docs/sandbox.md, "Why GRPO learned only the format")."""


def build_tiny_tokenizer(spec: TinyPolicySpec | None = None) -> Any:
    """Train a byte-level BPE on the built-in corpus and wrap it as a ``Qwen2Tokenizer`` with Qwen's special tokens
    and the Qwen-VL chat template (``padding_side="left"``, eos ``<|im_end|>``, pad ``<|endoftext|>``)."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    spec = spec or TinyPolicySpec()
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    bpe.train_from_iterator(list(corpus_lines()), trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = model["vocab"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    # Specials follow the learned vocabulary (as in Qwen's tokenizer, where they start at 151643).
    for token in QWEN_SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(QWEN_SPECIAL_TOKENS),
        padding_side="left",
        model_max_length=spec.max_position_embeddings,
        errors="replace",
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = QWEN_VL_CHAT_TEMPLATE
    return tokenizer


def build_tiny_processor(spec: TinyPolicySpec | None = None) -> Any:
    """The tiny tokenizer plus a ``Qwen2VLImageProcessor`` with small pixel limits, as a ``Qwen2_5_VLProcessor``."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    spec = spec or TinyPolicySpec()
    tokenizer = build_tiny_tokenizer(spec)
    size = {"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels}
    image_processor = Qwen2VLImageProcessor(size=size)
    video_processor = Qwen2VLVideoProcessor(size=size)
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN_VL_CHAT_TEMPLATE,
    )


def tiny_policy_config(tokenizer: Any, spec: TinyPolicySpec | None = None) -> Any:
    """A ``Qwen2_5_VLConfig`` of the tiny policy whose special token ids match ``tokenizer``."""
    from transformers import Qwen2_5_VLConfig

    spec = spec or TinyPolicySpec()
    h = spec.hidden_size
    head_dim = h // spec.num_attention_heads
    # M-RoPE splits head_dim/2 rotary frequencies over (temporal, height, width), Qwen's 2:3:3 ratio.
    half = head_dim // 2
    t = max(1, half // 4)
    mrope = [t, (half - t) // 2, half - t - (half - t) // 2]
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in QWEN_SPECIAL_TOKENS}
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
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
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
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_tiny_policy(out_dir: str | Path, seed: int = 0, spec: TinyPolicySpec | None = None) -> Path:
    """Build and save the tiny policy (processor + random ``Qwen2_5_VLForConditionalGeneration``) into ``out_dir``.

    Returns ``out_dir``. Same seed → same files and weights.
    """
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from .loading import policy_generation_config

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = spec or TinyPolicySpec()
    processor = build_tiny_processor(spec)
    config = tiny_policy_config(processor.tokenizer, spec)
    torch.manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32)
    model.generation_config = policy_generation_config(model.config, processor.tokenizer)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("tiny policy: %d parameters, vocab %d, saved to %s", n_params, len(processor.tokenizer), out)
    return out


def make_tiny_command(args: argparse.Namespace) -> int:
    """``easyr1 make-tiny --out DIR [--seed S] [--skip-editor]``."""
    from rich.console import Console

    console = Console()
    out = Path(args.out)
    policy_dir = build_tiny_policy(out / "policy", seed=args.seed)
    console.print(f"policy: {policy_dir}")
    if args.skip_editor:
        return 0
    try:
        from .tiny_editor import build_tiny_editor
    except ImportError as exc:
        console.print(f"editor: not built — easyr1.models.tiny_editor is unavailable ({exc})", markup=False)
        return 1
    editor_dir = out / "editor"
    try:
        build_tiny_editor(editor_dir, args.seed)
    except Exception as exc:
        logger.exception("building the tiny editor failed")
        console.print(f"editor: failed — {type(exc).__name__}: {exc}", markup=False)
        return 1
    console.print(f"editor: {editor_dir}")
    return 0
