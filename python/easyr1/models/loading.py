"""One loading path for the policy, tiny or real: Qwen2-VL, Qwen2.5-VL and Qwen3-VL through transformers' classes.

``load_policy("tiny/policy")`` and ``load_policy("/models/Qwen2.5-VL-7B-Instruct", dtype="bfloat16")`` run the same
code: read ``config.json``, pick the family's ``…ForConditionalGeneration`` class (from the family adapter,
``easyr1.models.families``), load processor and weights, check that they belong together, then apply the training
options (frozen vision tower, gradient checkpointing) and a generation config that can never emit vision
placeholder tokens.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from easyr1.core.registries import POLICY_FAMILIES

from .families import family_names, get_family

if TYPE_CHECKING:
    import torch

    from easyr1.config.actor import ModelConfig

logger = logging.getLogger(__name__)

AUTO_FAMILY = "auto"
"""``worker.actor.model.model_family`` value meaning: whatever ``config.json`` says."""

VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")


class PolicyLoadError(ValueError):
    """The policy folder cannot be loaded: missing, not a supported vision-language model, or mismatched parts."""


@dataclass
class LoadedPolicy:
    """A loaded policy: the model, its processor and what was decided while loading."""

    model: Any
    """A ``…ForConditionalGeneration`` module (train or eval mode as left by the caller)."""
    processor: Any
    """The matching multimodal processor (tokenizer + image processor + chat template)."""
    family: str
    """``config.model_type``: qwen2_vl, qwen2_5_vl, qwen3_vl or qwen3_vl_moe."""
    dtype: torch.dtype
    attn_implementation: str
    path: Path


def read_model_type(model_path: str | Path, expected: str = AUTO_FAMILY) -> str:
    """The ``model_type`` of a Hugging Face folder, with clear errors for a missing or non-VL folder, or for one of
    another family than ``expected`` (``worker.actor.model.model_family``; ``auto`` accepts any supported one)."""
    path = Path(model_path)
    if not path.exists():
        raise PolicyLoadError(
            f"policy path {str(path)!r} does not exist (build a tiny one with `easyr1 make-tiny --out DIR` or point "
            "worker.actor.model.model_path at a downloaded Qwen2.5-VL folder)"
        )
    config_file = path / "config.json"
    if not config_file.is_file():
        raise PolicyLoadError(f"{str(path)!r} is not a Hugging Face model folder: no config.json")
    try:
        model_type = json.loads(config_file.read_text())["model_type"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise PolicyLoadError(f"{config_file}: unreadable or without model_type ({exc})") from exc
    if model_type not in POLICY_FAMILIES:
        raise PolicyLoadError(
            f"{config_file}: model_type {model_type!r} is not a supported vision-language policy; expected one of "
            f"{sorted(family_names())}"
        )
    if expected not in (AUTO_FAMILY, model_type):
        raise PolicyLoadError(
            f"{config_file}: model_type {model_type!r} but worker.actor.model.model_family={expected!r} (set it to "
            f"{model_type!r} or auto, or point model_path at a {expected} folder)"
        )
    return model_type


def resolve_dtype(dtype: str, device: str | torch.device) -> torch.dtype:
    """``auto`` → bf16 on GPU, fp32 on CPU; otherwise the named dtype."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise PolicyLoadError(f"dtype {dtype!r}: expected auto, float32, bfloat16 or float16") from None


def resolve_attn_implementation(attn: str, device: str | torch.device) -> str:
    """``auto`` → ``flash_attention_2`` on GPU when ``flash_attn`` is installed, else ``sdpa``."""
    if attn != "auto":
        return attn
    if str(device).startswith("cuda"):
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            pass
    return "sdpa"


def vision_token_ids(tokenizer: Any) -> list[int]:
    """Ids of the vision placeholder tokens the tokenizer knows (never valid in a generated response)."""
    ids = []
    for tok in VISION_TOKENS:
        tid = tokenizer.convert_tokens_to_ids(tok)
        if tid is not None and tid != tokenizer.unk_token_id:
            ids.append(int(tid))
    return sorted(set(ids))


def stop_token_ids(tokenizer: Any) -> list[int]:
    """``<|im_end|>`` and ``<|endoftext|>`` ids (those present), then the tokenizer's eos if different."""
    ids = []
    for tok in STOP_TOKENS:
        tid = tokenizer.convert_tokens_to_ids(tok)
        if tid is not None and tid != tokenizer.unk_token_id:
            ids.append(int(tid))
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(int(tokenizer.eos_token_id))
    return ids


def policy_generation_config(model_config: Any, tokenizer: Any) -> Any:
    """A clean ``GenerationConfig``: stop at ``<|im_end|>``/``<|endoftext|>``, pad with the tokenizer's pad token,
    suppress every vision placeholder token. Sampling knobs stay neutral; engines set them per call, so a
    checkpoint's own ``generation_config.json`` (e.g. repetition penalty) cannot silently change the sampling
    distribution away from the policy whose log-probs we train on."""
    from transformers import GenerationConfig

    eos = stop_token_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[-1]
    text_config = model_config.get_text_config() if hasattr(model_config, "get_text_config") else model_config
    return GenerationConfig(
        bos_token_id=getattr(text_config, "bos_token_id", None),
        eos_token_id=eos,
        pad_token_id=pad,
        suppress_tokens=vision_token_ids(tokenizer),
        do_sample=True,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
    )


def load_processor(path: str | Path, *, trust_remote_code: bool = False) -> Any:
    """``AutoProcessor.from_pretrained`` with left padding (generation needs it) and a clear error."""
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise PolicyLoadError(f"cannot load a processor from {str(path)!r}: {type(exc).__name__}: {exc}") from exc
    if not hasattr(processor, "tokenizer") or not hasattr(processor, "image_processor"):
        raise PolicyLoadError(f"{str(path)!r} has a {type(processor).__name__}, not a multimodal processor")
    processor.tokenizer.padding_side = "left"
    return processor


def check_processor_matches(model_config: Any, processor: Any, path: str | Path) -> None:
    """Raise :class:`PolicyLoadError` when the processor's tokenizer does not belong to the model."""
    tok = processor.tokenizer
    image_id = tok.convert_tokens_to_ids("<|image_pad|>")
    if image_id != model_config.image_token_id:
        raise PolicyLoadError(
            f"processor/model mismatch in {str(path)!r}: tokenizer's <|image_pad|> is {image_id}, "
            f"the model's image_token_id is {model_config.image_token_id}"
        )
    vocab = model_config.get_text_config().vocab_size
    if len(tok) > vocab:
        raise PolicyLoadError(
            f"processor/model mismatch in {str(path)!r}: tokenizer has {len(tok)} tokens, model vocabulary {vocab}"
        )


def vision_tower(model: Any) -> Any:
    """The vision encoder submodule (``model.model.visual`` in transformers ≥ 4.52, ``model.visual`` before)."""
    for name in ("model.visual", "visual"):
        try:
            return model.get_submodule(name)
        except AttributeError:
            continue
    raise PolicyLoadError(f"{type(model).__name__} has no vision tower (model.visual)")


def decoder_layers(model: Any) -> list[Any]:
    """The language model's decoder layers (FSDP wraps each)."""
    for name in ("model.language_model.layers", "model.layers", "language_model.model.layers"):
        try:
            return list(model.get_submodule(name))
        except AttributeError:
            continue
    raise PolicyLoadError(f"{type(model).__name__}: cannot find the decoder layers")


def enable_gradient_checkpointing(model: Any) -> None:
    """Non-reentrant activation checkpointing of every decoder layer (and vision block); KV cache off."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers ≥ 5.x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.config.use_cache = False


def is_gradient_checkpointing(model: Any) -> bool:
    return any(getattr(m, "gradient_checkpointing", False) for m in model.modules())


def load_policy(
    model_path: str | Path,
    *,
    tokenizer_path: str | Path | None = None,
    dtype: str = "auto",
    attn_implementation: str = "auto",
    device: str = "cpu",
    freeze_vision_tower: bool = False,
    gradient_checkpointing: bool = False,
    trust_remote_code: bool = False,
    load_weights: bool = True,
    family: str = AUTO_FAMILY,
) -> LoadedPolicy:
    """Load a Qwen-VL family policy and its processor from local folders.

    ``load_weights=False`` builds the same model with uninitialised weights from ``config.json`` only (no weight
    files read) — for FSDP ranks that receive the weights from rank 0.

    ``device`` decides the ``auto`` dtype and attention implementation and where the weights go. Gradient
    checkpointing (non-reentrant) also turns the KV cache off for training forwards. The model is returned in
    eval mode; the caller switches to ``train()`` when it trains. ``family`` (a ``model_type`` or ``auto``) must
    match the folder's ``config.json``.
    """

    family = read_model_type(model_path, family)
    processor = load_processor(tokenizer_path or model_path, trust_remote_code=trust_remote_code)
    torch_dtype = resolve_dtype(dtype, device)
    attn = resolve_attn_implementation(attn_implementation, device)
    cls = policy_class(family)
    try:
        if load_weights:
            model = cls.from_pretrained(
                str(model_path), dtype=torch_dtype, attn_implementation=attn, trust_remote_code=trust_remote_code
            )
        else:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(str(model_path), trust_remote_code=trust_remote_code)
            config._attn_implementation = attn
            model = instantiate_policy(config, dtype=torch_dtype)
    except Exception as exc:
        raise PolicyLoadError(
            f"cannot load {cls.__name__} from {str(model_path)!r}: {type(exc).__name__}: {exc}"
        ) from exc
    check_processor_matches(model.config, processor, tokenizer_path or model_path)
    model.to(device)
    model.generation_config = policy_generation_config(model.config, processor.tokenizer)
    if freeze_vision_tower:
        vision_tower(model).requires_grad_(False)
    if gradient_checkpointing:
        enable_gradient_checkpointing(model)
    model.eval()
    logger.info(
        "loaded %s (%s, %s, attn=%s, %.1fM params) from %s",
        cls.__name__,
        family,
        torch_dtype,
        attn,
        sum(p.numel() for p in model.parameters()) / 1e6,
        model_path,
    )
    return LoadedPolicy(model, processor, family, torch_dtype, attn, Path(model_path))


def policy_class(family: str) -> Any:
    """The transformers class of a supported ``model_type`` (from its family adapter)."""
    return get_family(family).model_class()


def instantiate_policy(config: Any, *, dtype: torch.dtype | None = None) -> Any:
    """A policy module of ``config``'s family with uninitialised weights (fast; load a state dict into it next).
    Non-persistent buffers (rotary frequencies) are computed as usual."""
    import torch

    family = config.model_type
    if family not in POLICY_FAMILIES:
        raise PolicyLoadError(f"model_type {family!r} is not a supported vision-language policy")
    cls = policy_class(family)
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older transformers: initialise normally (slower, same result after loading)
        from contextlib import nullcontext as no_init_weights
    with no_init_weights():
        model = cls._from_config(config, dtype=dtype or torch.float32)
    return model


def load_policy_from_config(cfg: ModelConfig, *, device: str = "cpu", for_training: bool = True) -> LoadedPolicy:
    """:func:`load_policy` with the options of ``worker.actor.model`` (training options only if ``for_training``)."""
    return load_policy(
        cfg.model_path,
        tokenizer_path=cfg.tokenizer_path,
        dtype=cfg.dtype,
        attn_implementation=cfg.attn_implementation,
        device=device,
        freeze_vision_tower=cfg.freeze_vision_tower and for_training,
        gradient_checkpointing=cfg.enable_gradient_checkpointing and for_training,
        trust_remote_code=cfg.trust_remote_code,
        family=cfg.model_family,
    )
