"""LoRA on the wire: the names a weight sync gives LoRA tensors, and the receiving side of an adapter-only sync.

An adapted linear ``X`` (peft, injected in place) holds ``X.base_layer.weight``/``X.base_layer.bias`` (frozen),
``X.lora_A.default.weight`` (r × in) and ``X.lora_B.default.weight`` (out × r); its output is
``base(x) + scaling · B A x``. On the wire (and in exports) base tensors keep the plain model's names ``X.weight``/
``X.bias``, adapters are ``X.lora_A.weight`` and ``X.lora_B.weight`` with B already multiplied by ``scaling`` — so
a receiver needs neither alpha nor rank: it serves the adapters with scaling 1 (:func:`serve_adapters`).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

ADAPTER = "default"
"""The peft adapter name used on both sides."""
_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>[AB])\.(?:" + ADAPTER + r"\.)?weight$")


def wire_name(key: str) -> str:
    """The sync/export name of an adapted model's state-dict key."""
    m = _LORA_KEY.match(key)
    if m:
        return f"{m['module']}.lora_{m['ab']}.weight"
    return key.replace(".base_layer.", ".")


def lora_parts(key: str) -> tuple[str, str] | None:
    """``(module, "A"|"B")`` for an adapter key (state-dict or wire name), else ``None``."""
    m = _LORA_KEY.match(key)
    return (m["module"], m["ab"]) if m else None


def merge_state_dict(state: Mapping[str, torch.Tensor], scaling: float) -> dict[str, torch.Tensor]:
    """Plain weights from an adapted model's (full) state dict: ``W + scaling · B A`` for every adapted layer
    (computed in fp32, stored in ``W``'s dtype), base-layer names restored, adapters dropped."""
    adapters: dict[str, dict[str, torch.Tensor]] = {}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = lora_parts(key)
        if parts:
            adapters.setdefault(parts[0], {})[parts[1]] = value
        else:
            out[wire_name(key)] = value
    for module, ab in adapters.items():
        weight = out[f"{module}.weight"]
        out[f"{module}.weight"] = merged_weight(weight, ab["A"], ab["B"], scaling)
    return out


def merged_weight(weight: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scaling: float) -> torch.Tensor:
    """``W + scaling · B A`` in fp32, returned in ``W``'s dtype."""
    return (weight.float() + scaling * (b.float() @ a.float())).to(weight.dtype)


def serve_adapters(model: torch.nn.Module, ranks: Mapping[str, int]) -> None:
    """Inject inference LoRA layers (scaling 1, no dropout, frozen) into ``model`` for every ``module → rank``;
    adapters start at zero (B = 0), so outputs are unchanged until adapter weights are loaded."""
    from peft import LoraConfig, inject_adapter_in_model

    by_rank: dict[int, list[str]] = {}
    for module, rank in ranks.items():
        by_rank.setdefault(rank, []).append(module)
    for rank, modules in sorted(by_rank.items()):
        cfg = LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=modules, bias="none")
        inject_adapter_in_model(cfg, model, adapter_name=ADAPTER)
    model.requires_grad_(False)
    model.eval()
    logger.info("serving LoRA adapters on %d layers (ranks %s)", len(ranks), sorted(by_rank))


def served_state_key(wire: str, adapted: Iterable[str] | set[str]) -> str:
    """The key in a model with served adapters (:func:`serve_adapters`) that wire name ``wire`` loads into."""
    parts = lora_parts(wire)
    if parts:
        return f"{parts[0]}.lora_{parts[1]}.{ADAPTER}.weight"
    module, _, leaf = wire.rpartition(".")
    if module in adapted:
        return f"{module}.base_layer.{leaf}"
    return wire


def write_peft_folder(folder: str | os.PathLike[str], adapters: Mapping[str, torch.Tensor]) -> Path:
    """Write wire-named adapters (``X.lora_A.weight``, ``X.lora_B.weight`` with B pre-scaled) as a PEFT adapter
    folder that an engine's own LoRA loader reads (vLLM's ``LoRARequest``): ``adapter_model.safetensors`` under
    PEFT's saved names and an ``adapter_config.json`` with ``lora_alpha == r`` (scaling 1, since B carries it).
    Ranks may differ per module (``rank_pattern``); every module needs both matrices."""
    from safetensors.torch import save_file

    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in adapters.items():
        parts = lora_parts(name)
        if parts is None:
            raise ValueError(f"{name!r} is not a LoRA adapter tensor")
        pairs.setdefault(parts[0], {})[parts[1]] = tensor
    if not pairs:
        raise ValueError("no adapter tensors to write")
    incomplete = sorted(m for m, ab in pairs.items() if set(ab) != {"A", "B"})
    if incomplete:
        raise ValueError(f"adapters without both lora_A and lora_B: {incomplete[:3]}")
    ranks = {module: int(ab["A"].shape[0]) for module, ab in pairs.items()}
    rank = max(set(ranks.values()), key=list(ranks.values()).count)
    config = {
        "peft_type": "LORA",
        "r": rank,
        "lora_alpha": rank,
        "rank_pattern": {m: r for m, r in ranks.items() if r != rank},
        "alpha_pattern": {m: r for m, r in ranks.items() if r != rank},
        "target_modules": sorted({m.rsplit(".", 1)[-1] for m in pairs}),
        "bias": "none",
        "lora_dropout": 0.0,
    }
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {
        f"base_model.model.{module}.lora_{ab}.weight": t.detach().to("cpu").contiguous()
        for module, parts in pairs.items()
        for ab, t in parts.items()
    }
    save_file(tensors, str(out / "adapter_model.safetensors"))
    (out / "adapter_config.json").write_text(json.dumps(config, indent=1))
    return out
