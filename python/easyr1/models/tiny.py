"""Tiny real-architecture models built offline: a random-weight Qwen2.5-VL or Qwen3-VL policy with a locally
trained tokenizer.

``easyr1 make-tiny --out DIR [--family qwen3_vl]`` writes ``DIR/policy`` (this module) and ``DIR/editor``
(``tiny_editor``). Both are ordinary Hugging Face folders, loaded with the same code as the real Qwen2.5-VL-7B /
Qwen3-VL-8B and Qwen-Image-Edit checkpoints. What differs between families (processor class, patch size, config,
chat template) comes from the family adapter (``easyr1.models.families``). Everything is deterministic for a given
seed: the tokenizer depends only on the built-in corpus, the weights only on the seed.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .corpus import QWEN_SPECIAL_TOKENS, QWEN_VL_CHAT_TEMPLATE, corpus_lines
from .families import DEFAULT_TINY_FAMILY, get_family, tiny_family_names

logger = logging.getLogger(__name__)

PATCH = 28
"""One merged Qwen2.5-VL vision token covers 28×28 pixels (patch 14, spatial merge 2; Qwen3-VL: 32×32)."""


MERGER_OUTPUT_PARAMS = ("mlp.2.weight", "mlp.2.bias", "linear_fc2.weight", "linear_fc2.bias")
"""Name endings of the vision mergers' output layers (Qwen2.5-VL ``merger.mlp.2``; Qwen3-VL ``merger.linear_fc2``
and ``deepstack_merger_list.<i>.linear_fc2``), among the vision tower's parameters whose name has ``merger``."""


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
    mrope_section: tuple[int, int, int] | None = None
    """How the language model's ``head_dim / 2`` rotary frequencies are split over an image token's (temporal,
    height, width) positions; ``None``: the family's own split (Qwen2.5-VL: blocks in about a 2:3:3 ratio, highest
    frequencies temporal; Qwen3-VL: interleaved 24:20:20). Text tokens carry the same position in all three, so
    only image tokens see a difference. With Qwen2.5-VL's blocks and a small head the width block gets only the
    lowest frequencies (head 32: at most 0.003 rad per token), so the language model cannot tell an image's left
    tokens from its right ones by position; ``(1, 1, 14)`` gives width frequencies up to 0.32 rad per token."""
    vision_merger_scale: float | None = None
    """Multiply the vision merger's output layer (weight and bias; Qwen3-VL: the DeepStack mergers' too) by this at
    initialisation; ``None``: unchanged. Random merged vision tokens have a norm of ~10, about 40× the text
    embeddings', so what the language model's layers add to an image token barely changes it; 0.05 brings them to
    the text's scale."""
    vision_pos_embed_std: float | None = None
    """Qwen3-VL only: standard deviation of the vision tower's learned absolute position embedding at
    initialisation; ``None``: transformers' own (0.02, about 3 % of a 64 px patch embedding's norm, so a merged
    vision token says little about where in the image it lies until training grows it)."""


SANDBOX_POLICY_SPEC = TinyPolicySpec(
    hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2
)
"""The policy ``easyr1 demo`` and ``benchmarks/learning.py`` train (~0.95 M parameters, head size 32 so vLLM's CPU
attention accepts it too). The default 0.29 M spec does not condition on the prompt after a short warm start: its
greedy answer is the same for every row (measured: docs/sandbox.md, "Why GRPO learned only the format")."""


def build_tiny_tokenizer(spec: TinyPolicySpec | None = None, chat_template: str = QWEN_VL_CHAT_TEMPLATE) -> Any:
    """Train a byte-level BPE on the built-in corpus and wrap it as a ``Qwen2Tokenizer`` with Qwen's special tokens
    and a Qwen-VL chat template (``padding_side="left"``, eos ``<|im_end|>``, pad ``<|endoftext|>``)."""
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
    tokenizer.chat_template = chat_template
    return tokenizer


def build_tiny_processor(spec: TinyPolicySpec | None = None, family: str = DEFAULT_TINY_FAMILY) -> Any:
    """The tiny tokenizer inside the family's processor with small pixel limits (``Qwen2_5_VLProcessor`` with a
    patch-14 image processor, or ``Qwen3VLProcessor`` with a patch-16 one)."""
    spec = spec or TinyPolicySpec()
    adapter = get_family(family)
    tokenizer = build_tiny_tokenizer(spec, adapter.chat_template)
    return adapter.tiny_processor(tokenizer, spec)


def tiny_policy_config(tokenizer: Any, spec: TinyPolicySpec | None = None, family: str = DEFAULT_TINY_FAMILY) -> Any:
    """The family's config (``Qwen2_5_VLConfig``/``Qwen3VLConfig``) of the tiny policy whose special token ids match
    ``tokenizer``."""
    return get_family(family).tiny_config(tokenizer, spec or TinyPolicySpec())


def build_tiny_policy(
    out_dir: str | Path, seed: int = 0, spec: TinyPolicySpec | None = None, family: str = DEFAULT_TINY_FAMILY
) -> Path:
    """Build and save the tiny policy (processor + random ``…ForConditionalGeneration`` of ``family``, a
    ``model_type`` such as ``qwen2_5_vl`` or ``qwen3_vl``) into ``out_dir``.

    Returns ``out_dir``. Same seed → same files and weights.
    """
    import torch

    from .loading import policy_generation_config

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = spec or TinyPolicySpec()
    adapter = get_family(family)
    processor = build_tiny_processor(spec, family)
    config = tiny_policy_config(processor.tokenizer, spec, family)
    torch.manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = adapter.model_class()(config).to(torch.float32)
        if spec.vision_merger_scale is not None:
            visual = model.model.visual.named_parameters()
            scaled = [p for n, p in visual if "merger" in n and n.endswith(MERGER_OUTPUT_PARAMS)]
            if not scaled:
                raise ValueError(f"vision_merger_scale: no merger output layer found in the {family} vision tower")
            with torch.no_grad():
                for param in scaled:
                    param.mul_(spec.vision_merger_scale)
        if spec.vision_pos_embed_std is not None:
            pos_embed = getattr(getattr(model.model, "visual", None), "pos_embed", None)
            if pos_embed is None:
                raise ValueError(f"vision_pos_embed_std: the {family} vision tower has no learned position embedding")
            with torch.no_grad():
                pos_embed.weight.normal_(0.0, spec.vision_pos_embed_std)
    model.generation_config = policy_generation_config(model.config, processor.tokenizer)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("tiny %s policy: %d parameters, vocab %d, saved to %s", family, n_params, len(processor.tokenizer), out)
    return out


def make_tiny_command(args: argparse.Namespace) -> int:
    """``easyr1 make-tiny --out DIR [--seed S] [--family F] [--skip-editor]``."""
    from rich.console import Console

    console = Console()
    out = Path(args.out)
    family = getattr(args, "family", None) or DEFAULT_TINY_FAMILY
    if family not in tiny_family_names():
        console.print(f"--family {family!r}: the tiny builder makes one of {', '.join(tiny_family_names())}")
        return 2
    policy_dir = build_tiny_policy(out / "policy", seed=args.seed, family=family)
    console.print(f"policy ({family}): {policy_dir}")
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
