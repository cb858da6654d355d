"""LoRA on the policy's language model with ``peft``: adapters injected in place (the module tree and every name
outside the adapted layers stay those of the Hugging Face model), adapters switched off for reference log-probs,
and the layout of a LoRA weight sync.

Names on the wire and in exports: ``easyr1.transfer.lora`` (base tensors under the plain model's names, adapters as
``X.lora_A.weight``/``X.lora_B.weight`` with B pre-scaled). Two sync modes (``worker.actor.lora.sync``):

* ``adapters`` — every base tensor is static (sent in full syncs only); an update sends the adapters (plus a fully
  trained vision tower): a few percent of the bytes. The receiver serves them as LoRA layers (the ``hf`` engine).
* ``merged`` — every adapted layer's weight travels as ``W + scaling · B A``; an update sends the decoder layers that
  hold adapters (whole layers, so engines that fuse q/k/v or gate/up get complete groups), the rest is static.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch

from easyr1.config.actor import LoRAConfig
from easyr1.models.loading import decoder_layers, vision_tower
from easyr1.transfer.lora import ADAPTER, lora_parts, merged_weight, wire_name
from easyr1.transfer.weight_sync import TensorSpec, dtype_name

logger = logging.getLogger(__name__)


def target_module_names(model: torch.nn.Module, cfg: LoRAConfig) -> list[str]:
    """Full names of the linear layers inside the language model's decoder layers whose last name component is
    in ``cfg.target_modules`` (never the vision tower's)."""
    layers = {id(layer) for layer in decoder_layers(model)}
    names = []
    prefix_of: dict[int, str] = {}
    for name, module in model.named_modules():
        if id(module) in layers:
            prefix_of[id(module)] = name
    targets = set(cfg.target_modules)
    for layer_name in prefix_of.values():
        for sub_name, module in model.get_submodule(layer_name).named_modules():
            if sub_name and sub_name.rsplit(".", 1)[-1] in targets and isinstance(module, torch.nn.Linear):
                names.append(f"{layer_name}.{sub_name}")
    if not names:
        raise ValueError(f"worker.actor.lora.target_modules {cfg.target_modules} match no decoder-layer linear layer")
    return names


def peft_lora_config(cfg: LoRAConfig, target_modules: list[str], *, base_model: str | None = None) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=target_modules,
        bias="none",
        base_model_name_or_path=base_model,
    )


def apply_lora(model: torch.nn.Module, cfg: LoRAConfig, *, train_vision_tower: bool, seed: int) -> list[str]:
    """Inject LoRA adapters into ``model`` (in place, before FSDP sharding); afterwards only the adapters — and
    the vision tower when ``train_vision_tower`` — require gradients. Adapter initialisation is seeded with
    ``seed`` so every rank of an FSDP world starts from the same adapters. Returns the adapted module names."""
    from peft import inject_adapter_in_model

    targets = target_module_names(model, cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inject_adapter_in_model(peft_lora_config(cfg, targets), model, adapter_name=ADAPTER)
    for name, param in model.named_parameters():
        param.requires_grad_(".lora_" in name)
    if train_vision_tower:
        vision_tower(model).requires_grad_(True)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info(
        "LoRA r=%d alpha=%g on %d layers: %d trainable parameters of %d",
        cfg.rank,
        cfg.alpha,
        len(targets),
        trainable,
        sum(p.numel() for p in model.parameters()),
    )
    return targets


def is_lora_model(model: torch.nn.Module) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(isinstance(m, BaseTunerLayer) for m in model.modules())


@contextlib.contextmanager
def adapters_disabled(model: torch.nn.Module) -> Iterator[None]:
    """The base model for the duration (what ``PeftModel.disable_adapter()`` does, for an injected model):
    every LoRA layer computes its base layer only. Which parameters require gradients is restored afterwards."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    grads = {id(p): p.requires_grad for p in model.parameters()}
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer in layers:
            layer.enable_adapters(True)
        for p in model.parameters():
            p.requires_grad_(grads[id(p)])


def adapter_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The adapters of an adapted model's state dict under PEFT's saved names (``base_model.model.<module>.
    lora_A.weight``), as ``PeftModel.from_pretrained`` reads them."""
    out = {}
    for key, value in state.items():
        parts = lora_parts(key)
        if parts:
            out[f"base_model.model.{parts[0]}.lora_{parts[1]}.weight"] = value.detach().contiguous()
    return out


_LAYER = re.compile(r"^(?P<layer>.*\.layers\.\d+)\.")

SyncLayout = list[tuple[str, tuple[str, ...]]]
"""``(wire name, source state-dict keys)`` in sending order: one key, or ``(W, A, B)`` for a merged weight."""


def sync_layout(keys: Iterable[str], mode: str) -> SyncLayout:
    """The wire entries of a LoRA sync in ``mode`` (``adapters`` or ``merged``) over state-dict ``keys`` (in
    state-dict order). A merged weight comes where its ``lora_B`` is, so a stream of full tensors in state-dict
    order has all three sources by then."""
    keys = list(keys)
    if mode == "adapters":
        return [(wire_name(k), (k,)) for k in keys]
    if mode != "merged":
        raise ValueError(f"LoRA sync mode {mode!r}: expected adapters or merged")
    adapted = {parts[0] for k in keys if (parts := lora_parts(k))}
    layout: SyncLayout = []
    for k in keys:
        parts = lora_parts(k)
        if parts is None:
            if k.endswith(".base_layer.weight") and k.removesuffix(".base_layer.weight") in adapted:
                continue
            layout.append((wire_name(k), (k,)))
        elif parts[1] == "B":
            module = parts[0]
            layout.append((f"{module}.weight", (f"{module}.base_layer.weight", f"{module}.lora_A.{ADAPTER}.weight", k)))
    return layout


def sync_specs(
    layout: SyncLayout,
    specs: Mapping[str, tuple[tuple[int, ...], torch.dtype]],
    trainable: set[str],
    wire_dtype: torch.dtype,
) -> list[TensorSpec]:
    """Weight-plan entries of ``layout``: ``specs`` maps state keys to (full shape, dtype). Static: what an update
    need not send (see the module docstring)."""
    adapted_layers = {_layer(srcs[0]) for _, srcs in layout if len(srcs) == 3}
    adapted_layers |= {_layer(srcs[0]) for _, srcs in layout if lora_parts(srcs[0])}
    merged = any(len(srcs) == 3 for _, srcs in layout)
    out = []
    for name, srcs in layout:
        shape, dtype = specs[srcs[0]]
        if len(srcs) == 3 or lora_parts(srcs[0]):
            static = False
        elif merged:  # merged: whole adapted decoder layers travel
            static = srcs[0] not in trainable and _layer(srcs[0]) not in adapted_layers
        else:
            static = srcs[0] not in trainable
        wire = wire_dtype if dtype.is_floating_point else dtype
        out.append(TensorSpec(name, tuple(shape), dtype_name(wire), static=static))
    return out


def _layer(key: str) -> str | None:
    m = _LAYER.match(key)
    return m["layer"] if m else None


def sync_tensors(
    layout: SyncLayout, sent: Iterable[str], full: Iterator[tuple[str, torch.Tensor]], scaling: float
) -> Iterator[tuple[str, torch.Tensor]]:
    """The wire tensors of the ``sent`` names, in layout order, from ``full`` — full tensors of
    :func:`sources` in state-dict order. B is multiplied by ``scaling``; merged weights are computed in fp32."""
    sent = set(sent)
    held: dict[str, torch.Tensor] = {}
    for name, srcs in layout:
        if name not in sent:
            continue
        while not all(s in held for s in srcs):
            key, value = next(full)
            held[key] = value
        values = [held.pop(s) for s in srcs]
        if len(srcs) == 3:
            yield name, merged_weight(*values, scaling)
        elif (parts := lora_parts(srcs[0])) and parts[1] == "B":
            yield name, values[0].float() * scaling
        else:
            yield name, values[0]


def sources(layout: SyncLayout, sent: Iterable[str]) -> tuple[set[str], set[str]]:
    """State keys to gather for the ``sent`` names, and those among them to gather in their own dtype (inputs of
    fp32 arithmetic: adapters and the weights merged with them)."""
    sent = set(sent)
    keys, exact = set(), set()
    for name, srcs in layout:
        if name in sent:
            keys.update(srcs)
            if len(srcs) == 3 or lora_parts(srcs[0]):
                exact.update(srcs)
    return keys, exact
