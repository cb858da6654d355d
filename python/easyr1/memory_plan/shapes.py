"""Model shapes for memory planning, read from ``config.json`` files only (no weights, no torch).

``policy_shape(path_or_id)`` and ``editor_shape(path_or_id)`` read a local model folder, or — for a Hugging Face
id that is not a local folder — the published values in ``known_models.json``. Parameter counts of the policy come
from the architecture formulas below (split the way ``easyr1.actor.fsdp.apply_fsdp2`` wraps the model: one FSDP
unit per decoder layer and per vision block, the rest in the root unit); the editor's come from the safetensors
headers of a local checkpoint, or from the data file.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

KNOWN_MODELS_FILE = Path(__file__).with_name("known_models.json")

POLICY_TYPES = ("qwen2_5_vl", "qwen3_vl")
"""``model_type`` values whose parameter layout the formulas know (dense families; MoE layouts are not modelled)."""


class ModelConfigUnavailable(LookupError):
    """The model's config cannot be read: not a local folder with a config and not a known Hugging Face id."""


@lru_cache(maxsize=1)
def known_models() -> dict[str, Any]:
    return {k: v for k, v in json.loads(KNOWN_MODELS_FILE.read_text()).items() if not k.startswith("_")}


@dataclass(frozen=True)
class PolicyShape:
    """Architecture numbers of a Qwen2.5-VL or Qwen3-VL policy (text decoder + vision tower).

    Qwen3-VL differs in its parameter layout: no q/k/v bias but per-head q/k RMSNorms in the decoder; LayerNorms
    (with bias) and a plain two-layer MLP in the vision blocks; a learned vision position table; a bias on the
    patch embedding; and one extra patch merger per DeepStack layer.
    """

    source: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    tie_embeddings: bool
    vision_hidden_size: int
    vision_intermediate_size: int
    vision_depth: int
    vision_in_channels: int
    patch_size: int
    temporal_patch_size: int
    merge_size: int
    vision_out_size: int
    model_type: str = "qwen2_5_vl"
    """Which layout the formulas follow (one of :data:`POLICY_TYPES`)."""
    vision_position_embeddings: int = 0
    """Qwen3-VL: rows of the learned vision position table."""
    deepstack_layers: int = 0
    """Qwen3-VL: vision blocks whose outputs get a merger of their own (DeepStack)."""

    @property
    def qwen3(self) -> bool:
        return self.model_type == "qwen3_vl"

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def layer_params(self) -> int:
        """One decoder layer: q/k/v (with bias; Qwen3-VL: without, plus q/k RMSNorms over the head), o,
        gate/up/down, two RMSNorms."""
        h, q, kv, i = self.hidden_size, self.num_heads * self.head_dim, self.kv_dim, self.intermediate_size
        if self.qwen3:
            return h * q + 2 * h * kv + 2 * self.head_dim + q * h + 3 * h * i + 2 * h
        return (h * q + q) + 2 * (h * kv + kv) + q * h + 3 * h * i + 2 * h

    def lora_layer_params(self, rank: int, target_modules: list[str]) -> int:
        """LoRA A and B matrices of one decoder layer: ``rank × (in + out)`` per targeted linear layer."""
        h, q, kv, i = self.hidden_size, self.num_heads * self.head_dim, self.kv_dim, self.intermediate_size
        shapes = {
            "q_proj": (h, q),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (q, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }
        return sum(rank * sum(shapes[name]) for name in target_modules if name in shapes)

    @property
    def vision_block_params(self) -> int:
        """One vision block: two RMSNorms, fused qkv and proj (with bias), gate/up/down MLP (with bias); Qwen3-VL:
        two LayerNorms (with bias), fused qkv and proj, fc1/fc2 MLP (with bias)."""
        d, i = self.vision_hidden_size, self.vision_intermediate_size
        if self.qwen3:
            return 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * i + i) + (i * d + d)
        return 2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * (d * i + i) + (i * d + d)

    @property
    def vision_params(self) -> int:
        """The whole vision tower: patch embedding, blocks, patch merger (Qwen3-VL: also the position table and
        the DeepStack mergers)."""
        d = self.vision_hidden_size
        merged = d * self.merge_size**2
        patch = self.vision_in_channels * self.temporal_patch_size * self.patch_size**2 * d
        mlp = (merged * merged + merged) + (merged * self.vision_out_size + self.vision_out_size)
        if not self.qwen3:
            return patch + self.vision_depth * self.vision_block_params + d + mlp
        merger = 2 * d + mlp
        deepstack = self.deepstack_layers * (2 * merged + mlp)
        positions = self.vision_position_embeddings * d
        return patch + d + positions + self.vision_depth * self.vision_block_params + merger + deepstack

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size * (1 if self.tie_embeddings else 2)

    @property
    def total_params(self) -> int:
        return self.vision_params + self.embedding_params + self.num_layers * self.layer_params + self.hidden_size

    @property
    def root_params(self) -> int:
        """Parameters of the FSDP root unit: everything that is not a decoder layer or a vision block (embedding,
        LM head, final norm, patch embedding, merger). Stays unsharded from the start of forward to the end of
        backward."""
        return self.total_params - self.num_layers * self.layer_params - self.vision_depth * self.vision_block_params

    def image_tokens(self, pixels: int) -> int:
        """LLM tokens of one image of ``pixels`` pixels (after the 2×2 patch merge)."""
        return max(1, pixels // (self.patch_size * self.merge_size) ** 2)

    def image_patches(self, pixels: int) -> int:
        """Vision-tower tokens (patches) of one image."""
        return self.image_tokens(pixels) * self.merge_size**2


def policy_shape_from_config(config: dict[str, Any], source: str) -> PolicyShape:
    model_type = config.get("model_type")
    if model_type not in POLICY_TYPES:
        raise ModelConfigUnavailable(f"{source}: model_type {model_type!r} is not one of {', '.join(POLICY_TYPES)}")
    text = {**config, **config.get("text_config", {})}
    vision = config["vision_config"]
    hidden, heads = int(text["hidden_size"]), int(text["num_attention_heads"])
    return PolicyShape(
        source=source,
        vocab_size=int(text["vocab_size"]),
        hidden_size=hidden,
        intermediate_size=int(text["intermediate_size"]),
        num_layers=int(text["num_hidden_layers"]),
        num_heads=heads,
        num_kv_heads=int(text.get("num_key_value_heads") or heads),
        head_dim=int(text.get("head_dim") or hidden // heads),
        tie_embeddings=bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", False))),
        vision_hidden_size=int(vision["hidden_size"]),
        vision_intermediate_size=int(vision["intermediate_size"]),
        vision_depth=int(vision["depth"]),
        vision_in_channels=int(vision.get("in_channels", vision.get("in_chans", 3))),
        patch_size=int(vision.get("patch_size", 14)),
        temporal_patch_size=int(vision.get("temporal_patch_size", 2)),
        merge_size=int(vision.get("spatial_merge_size", 2)),
        vision_out_size=int(vision.get("out_hidden_size", hidden)),
        model_type=model_type,
        vision_position_embeddings=int(vision.get("num_position_embeddings", 0)) if model_type == "qwen3_vl" else 0,
        deepstack_layers=len(vision.get("deepstack_visual_indexes", ())) if model_type == "qwen3_vl" else 0,
    )


def _known(model: str, kind: str) -> dict[str, Any]:
    entry = known_models().get(model)
    if entry is None or entry["kind"] != kind:
        raise ModelConfigUnavailable(
            f"{model}: no config.json there and not a known {kind} id "
            f"(known: {', '.join(k for k, v in known_models().items() if v['kind'] == kind)})"
        )
    return entry


def policy_shape(model: str | Path) -> PolicyShape:
    """Shape of the policy at a local folder, or of a known Hugging Face id."""
    path = Path(model)
    config_file = path / "config.json"
    if config_file.is_file():
        return policy_shape_from_config(json.loads(config_file.read_text()), str(path))
    entry = _known(str(model), "policy")
    return policy_shape_from_config(entry["config"], f"{model} (published config, {KNOWN_MODELS_FILE.name})")


@dataclass(frozen=True)
class EditorShape:
    """What the editor's memory depends on: component parameter counts and the transformer/VAE sizes."""

    source: str
    pipeline: str
    transformer_params: int
    text_encoder_params: int
    vae_params: int
    inner_dim: int
    num_layers: int
    patch_size: int
    vae_scale: int
    vae_base_dim: int
    text_encoder: PolicyShape

    @property
    def total_params(self) -> int:
        return self.transformer_params + self.text_encoder_params + self.vae_params


def safetensors_numel(folder: Path) -> int:
    """Number of parameters stored in a folder's ``*.safetensors`` files, from their headers only."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelConfigUnavailable(f"{folder}: no *.safetensors files to count parameters from")
    total = 0
    for file in files:
        with file.open("rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(length))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            numel = 1
            for dim in info["shape"]:
                numel *= int(dim)
            total += numel
    return total


def _vae_scale(vae_config: dict[str, Any]) -> int:
    return 2 ** (len(vae_config.get("dim_mult", [1, 2, 4, 4])) - 1)


def editor_shape(model: str | Path) -> EditorShape:
    """Shape of a local diffusers Qwen-Image-Edit checkpoint, or of a known Hugging Face id."""
    root = Path(model)
    if (root / "model_index.json").is_file():
        index = json.loads((root / "model_index.json").read_text())
        transformer = json.loads((root / "transformer" / "config.json").read_text())
        vae = json.loads((root / "vae" / "config.json").read_text())
        text = policy_shape(root / "text_encoder")
        counts = {name: safetensors_numel(root / name) for name in ("transformer", "text_encoder", "vae")}
        pipeline, source = index.get("_class_name", "?"), str(root)
    else:
        entry = _known(str(model), "editor")
        pipeline = entry["pipeline"]
        while "same_as" in entry:
            entry = _known(entry["same_as"], "editor")
        transformer, vae = entry["transformer"]["config"], entry["vae"]["config"]
        text = policy_shape(entry["text_encoder"])
        counts = {
            "transformer": entry["transformer"]["parameters"],
            "text_encoder": text.total_params,
            "vae": entry["vae"]["parameters"],
        }
        source = f"{model} (published configs, {KNOWN_MODELS_FILE.name})"
    return EditorShape(
        source=source,
        pipeline=pipeline,
        transformer_params=counts["transformer"],
        text_encoder_params=counts["text_encoder"],
        vae_params=counts["vae"],
        inner_dim=int(transformer["num_attention_heads"]) * int(transformer["attention_head_dim"]),
        num_layers=int(transformer["num_layers"]),
        patch_size=int(transformer.get("patch_size", 2)),
        vae_scale=_vae_scale(vae),
        vae_base_dim=int(vae.get("base_dim", 96)),
        text_encoder=text,
    )
