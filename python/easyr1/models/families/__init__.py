"""Per-family adapters: everything that differs between Qwen-VL model families sits in one small object per family.

``get_family("qwen3_vl")`` returns the :class:`~easyr1.models.families.base.PolicyFamily` registered under that
``model_type`` in :data:`easyr1.core.registries.POLICY_FAMILIES` (the registry holds plain facts and an import
string, so the config validates ``worker.actor.model.model_family`` without importing torch). Adding a family: one
module here with a ``PolicyFamily`` subclass (model class, tiny processor and config, chat template, forward
inputs) and one ``POLICY_FAMILIES.register`` line.

* ``base`` — the adapter interface and the parts families share.
* ``qwen2_5_vl`` — Qwen2.5-VL (and Qwen2-VL, loading only).
* ``qwen3_vl`` — Qwen3-VL (and Qwen3-VL-MoE, loading only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from easyr1.core.registries import POLICY_FAMILIES

if TYPE_CHECKING:
    from .base import PolicyFamily

DEFAULT_TINY_FAMILY = "qwen2_5_vl"
"""The family ``make-tiny`` and the demo build when none is named."""


def get_family(model_type: str) -> PolicyFamily:
    """The adapter of ``model_type``; ``ValueError`` naming the known families for an unknown one."""
    return POLICY_FAMILIES.load(model_type)


def family_of(model: Any) -> PolicyFamily:
    """The adapter of a loaded model (a transformers module, also wrapped by FSDP2 or with injected adapters)."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type is None:
        raise ValueError(f"{type(model).__name__} has no config.model_type: cannot tell its model family")
    return get_family(model_type)


def family_names() -> list[str]:
    """Every registered ``model_type``."""
    return POLICY_FAMILIES.names()


def tiny_family_names() -> list[str]:
    """The families the tiny builder can make."""
    return [name for name in POLICY_FAMILIES.names() if POLICY_FAMILIES.facts(name).tiny]
