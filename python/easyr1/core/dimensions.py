"""The judge's five dimensions and the default reward weights — defined here once for every package."""

from __future__ import annotations

from types import MappingProxyType

DIMENSIONS: tuple[str, ...] = (
    "physical_geometric",
    "environment_context",
    "cultural_social",
    "logical_causal",
    "target_attribution",
)
"""The five judge dimensions, in the order the judge, the combination strategies and the logs use."""

FORMAT_WEIGHT_KEY = "format"
"""The weight key of the format score beside the five dimensions."""

DEFAULT_WEIGHTS = MappingProxyType({**{d: 0.15 for d in DIMENSIONS}, FORMAT_WEIGHT_KEY: 0.25})
"""Default ``worker.reward.weights`` (read-only; copy with ``dict(DEFAULT_WEIGHTS)``)."""
