"""Sampling parameters from the config (training and validation)."""

from __future__ import annotations

from easyr1.config import EasyR1Config
from easyr1.core.types import SamplingParams


def sampling_params(cfg: EasyR1Config, *, validation: bool = False, seed: int | None = None) -> SamplingParams:
    """``worker.rollout`` sampling (n, temperature, top-p, top-k, response length); ``validation`` applies
    ``worker.rollout.val_override_config``. ``seed`` defaults to ``worker.rollout.seed`` (pass ``seed + step``
    for fresh but reproducible samples every step)."""
    rollout = cfg.worker.rollout
    max_tokens = rollout.response_length or cfg.data.max_response_length
    params = SamplingParams(
        n=rollout.n,
        temperature=rollout.temperature,
        top_p=rollout.top_p,
        top_k=rollout.top_k,
        max_tokens=max_tokens,
        seed=rollout.seed if seed is None else seed,
    )
    if validation:
        val = rollout.val_override_config
        params.n, params.temperature, params.top_p = val.n, val.temperature, val.top_p
    return params
